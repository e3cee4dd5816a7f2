//! Data flows one way: sample → record → durable spool → MQTT. This crate holds the record, the
//! spool that commits every record before it is offered to the broker and deletes it only after
//! the broker acknowledged it, the encodings, and the MQTT publisher.
#![forbid(unsafe_code)]
