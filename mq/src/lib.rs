//! huststore's message queue (`mode mq;`): queues kept in LMDB through the storage crate's
//! group-committed batches, and the in-memory waiters of long polling, push and worker RPC.
//!
//! It must never know about HTTP or sockets: the worker hands it parsed parameters and
//! opaque waiter ids, and turns its answers into responses.
