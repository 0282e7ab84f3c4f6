"""SQLite (sqlite3 is imported here alone): the database, its migrations, held writes, repair.

Imports only base.
"""
