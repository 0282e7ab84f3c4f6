"""Settings: the tables of every key, the config file, .env and the environment, profiles (pure merging), API keys, the example file.

Imports only base.
"""
