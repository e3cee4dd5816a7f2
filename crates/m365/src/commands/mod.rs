//! Remote commands over MQTT (lock, unlock, lights, cruise, KERS, sample now, power off): off by
//! default, allowed per command in the configuration.
