"""The store: SQLAlchemy schema, database sessions, settings and the chunked voxel-map artifacts."""
