//! `[commands]`: which remote commands are allowed (none by default).
