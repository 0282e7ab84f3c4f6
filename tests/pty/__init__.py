"""The suites that drive chatcli in a real pty (pexpect): every test here is marked pty."""
