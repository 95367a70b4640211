//! The binary envelope of the messages between nodes (being written).
