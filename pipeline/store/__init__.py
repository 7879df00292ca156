"""The store: SQLAlchemy schema, database sessions, settings and the chunked voxel-map artifacts.

Importing the package registers every table (results and review) on ``schema.Base.metadata``.
"""

from pipeline.store import review_schema, schema

__all__ = ["review_schema", "schema"]
