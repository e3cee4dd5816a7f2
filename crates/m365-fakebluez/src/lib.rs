//! A fake BlueZ: an `org.bluez` service on a private `dbus-daemon`, answering exactly the D-Bus
//! calls btleplug makes, so the real client code path runs end to end with no Bluetooth adapter.
#![forbid(unsafe_code)]
