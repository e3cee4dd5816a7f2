//! Ride events detected from successive samples.
