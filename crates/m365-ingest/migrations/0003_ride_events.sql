-- Ride events (trip ended, battery low, …) share m365_events with availability and status:
-- `kind` is the event's name, `detail` its fields, and `record_id` the client's record id (a
-- derived key for `legacy` events), unique with `time` so a redelivered event is stored once
-- (a TimescaleDB hypertable's unique indexes must include its time column).
ALTER TABLE m365_events ADD COLUMN IF NOT EXISTS record_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS m365_events_record_id ON m365_events (record_id, time);
COMMENT ON TABLE m365_events IS 'Availability changes (online/offline), status messages and ride events (kind = the event name)';
COMMENT ON COLUMN m365_events.record_id IS 'Ride events: the record id (UUID v7), or a UUID v5 derived from scooter, event and time for legacy messages';
