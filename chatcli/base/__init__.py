"""Leaf types and text: errors and exit codes, the environment, events, the gate to the terminal, personal data and secrets, the log, blocks.

Imports nothing of chatcli outside itself.
"""
