"""The cleanup jobs the `cleanup` settings schedule: old download and instance records, stale records."""
