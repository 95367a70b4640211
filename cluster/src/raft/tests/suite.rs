//! openraft's storage test suite (see state_machine).
