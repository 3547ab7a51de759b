"""Pure approval logic: the alert model, workflow, chain-of-command policy, hashing and
screening. No I/O beyond reading the TOML files whose paths callers pass in.
"""
