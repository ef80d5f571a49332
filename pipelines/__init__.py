"""The `cmdcl` command line: joins extraction (cmdcl.extract) and the head (cmdcl.head)."""
