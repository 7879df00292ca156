"""The store: SQLAlchemy schema, database sessions, settings and the chunked voxel-map artifacts.

Importing the package registers every table (results, review, trend levels, review studies) on
``schema.Base.metadata`` and the audit log's flush hook (:mod:`pipeline.store.audit_chain`).
"""

from pipeline.store import audit_chain, review_schema, schema, stored_regions, study_schema, trend_schema

__all__ = ["audit_chain", "review_schema", "schema", "stored_regions", "study_schema", "trend_schema"]
