//! Adaptive sampling: fast while riding, slow while parked, a heartbeat when nothing changes.
