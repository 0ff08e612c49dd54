//! Harness for black-box tests: starting `rill` nodes on free loopback ports, the Python venv.
