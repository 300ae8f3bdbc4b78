"""The event log: storage, checkpoints, snapshots, following and auditing."""
