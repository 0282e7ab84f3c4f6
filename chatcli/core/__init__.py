"""The conversation: a turn and its outcome, the session, its accounts, the journal that saves it, /compact, exports.

Never imports app, commands, ui or cli.
"""
