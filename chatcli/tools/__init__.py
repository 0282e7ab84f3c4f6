"""Tools the model may call (issue 17): the built-in ones, and those of MCP servers.

A service layer beside llm/ and store/: core's tool loop runs them through a Toolbox, and
nothing here knows the session or the terminal. Approval is asked through a callback the
front end gives (the REPL asks on the terminal; a pipe refuses).
"""
