"""initial store

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("nnunet_configuration", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identity"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=128), nullable=False),
        sa.Column("mrn_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pseudonym"),
    )
    op.create_table(
        "configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("views", sa.JSON(), nullable=False),
        sa.Column("temperature_scaling", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_set_id", "name"),
    )
    with op.batch_alter_table("configurations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_configurations_model_set_id"), ["model_set_id"], unique=False)

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cohort", sa.String(length=64), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("reference_path", sa.Text(), nullable=True),
        sa.Column("reference_note", sa.Text(), nullable=True),
        sa.Column("study_uid", sa.String(length=64), nullable=True),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("frame_of_reference_uid", sa.String(length=64), nullable=True),
        sa.Column("size", sa.JSON(), nullable=False),
        sa.Column("spacing", sa.JSON(), nullable=False),
        sa.Column("origin", sa.JSON(), nullable=False),
        sa.Column("direction", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("reference_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_images_cohort"), ["cohort"], unique=False)
        batch_op.create_index(batch_op.f("ix_images_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_set_id", "name"),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_model_set_id"), ["model_set_id"], unique=False)

    op.create_table(
        "protocols",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("cohort", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("test_fraction", sa.Float(), nullable=False),
        sa.Column("calibration_fraction", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("protocols", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_protocols_model_set_id"), ["model_set_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=True),
        sa.Column("cases_total", sa.Integer(), nullable=False),
        sa.Column("cases_done", sa.Integer(), nullable=False),
        sa.Column("cases_skipped", sa.Integer(), nullable=False),
        sa.Column("cases_failed", sa.Integer(), nullable=False),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_sets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)

    op.create_table(
        "case_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("case_name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_failures_run_id"), ["run_id"], unique=False)

    op.create_table(
        "processings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_set_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=64), nullable=False),
        sa.Column("forward_passes", sa.Integer(), nullable=False),
        sa.Column("seconds_inference", sa.Float(), nullable=False),
        sa.Column("seconds_metrics", sa.Float(), nullable=False),
        sa.Column("seconds_storage", sa.Float(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_set_id"], ["model_sets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "model_set_id"),
    )
    with op.batch_alter_table("processings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_processings_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_processings_model_set_id"), ["model_set_id"], unique=False)

    op.create_table(
        "split_roles",
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["protocol_id"], ["protocols.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("protocol_id", "repeat", "image_id"),
    )
    op.create_table(
        "temperature_fits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=True),
        sa.Column("repeat", sa.Integer(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("nll_before", sa.Float(), nullable=False),
        sa.Column("nll_after", sa.Float(), nullable=False),
        sa.Column("voxels", sa.Integer(), nullable=False),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["configuration_id"], ["configurations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["protocol_id"], ["protocols.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("temperature_fits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_temperature_fits_configuration_id"), ["configuration_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_temperature_fits_protocol_id"), ["protocol_id"], unique=False)

    op.create_table(
        "case_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("processing_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("temperature_fit_id", sa.Integer(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("has_reference", sa.Boolean(), nullable=False),
        sa.Column("dsc_mean_fg", sa.Float(), nullable=True),
        sa.Column("ece", sa.Float(), nullable=True),
        sa.Column("brier", sa.Float(), nullable=True),
        sa.Column("nll", sa.Float(), nullable=True),
        sa.Column("ueo_auc", sa.Float(), nullable=True),
        sa.Column("fp_tp_auc", sa.Float(), nullable=True),
        sa.Column("fn_tn_auc", sa.Float(), nullable=True),
        sa.Column("roi_voxels", sa.Integer(), nullable=False),
        sa.Column("error_voxels", sa.Integer(), nullable=True),
        sa.Column("mean_entropy_roi", sa.Float(), nullable=False),
        sa.Column("voxel_ml", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["configuration_id"], ["configurations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["processing_id"], ["processings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["temperature_fit_id"], ["temperature_fits.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_results_configuration_id"), ["configuration_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_results_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_results_processing_id"), ["processing_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_results_temperature_fit_id"), ["temperature_fit_id"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("processing_id", sa.Integer(), nullable=True),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("configuration_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["configuration_id"], ["configurations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["processing_id"], ["processings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_processing_id"), ["processing_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_result_id"), ["result_id"], unique=False)

    op.create_table(
        "curve_points",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("budget_index", sa.Integer(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("ueo", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("flagged_ml", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("result_id", "budget_index"),
    )
    op.create_table(
        "reliability_bins",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("group", sa.Integer(), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum_confidence", sa.Float(), nullable=False),
        sa.Column("sum_correct", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("result_id", "group", "bin"),
    )
    op.create_table(
        "structure_results",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("structure", sa.String(length=100), nullable=False),
        sa.Column("dsc", sa.Float(), nullable=True),
        sa.Column("predicted_ml", sa.Float(), nullable=False),
        sa.Column("reference_ml", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("result_id", "class_index"),
    )


def downgrade() -> None:
    op.drop_table("structure_results")
    op.drop_table("reliability_bins")
    op.drop_table("curve_points")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_result_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_processing_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_image_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_results_temperature_fit_id"))
        batch_op.drop_index(batch_op.f("ix_case_results_processing_id"))
        batch_op.drop_index(batch_op.f("ix_case_results_image_id"))
        batch_op.drop_index(batch_op.f("ix_case_results_configuration_id"))

    op.drop_table("case_results")
    with op.batch_alter_table("temperature_fits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_temperature_fits_protocol_id"))
        batch_op.drop_index(batch_op.f("ix_temperature_fits_configuration_id"))

    op.drop_table("temperature_fits")
    op.drop_table("split_roles")
    with op.batch_alter_table("processings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processings_model_set_id"))
        batch_op.drop_index(batch_op.f("ix_processings_image_id"))

    op.drop_table("processings")
    with op.batch_alter_table("case_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_failures_run_id"))

    op.drop_table("case_failures")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status"))

    op.drop_table("runs")
    with op.batch_alter_table("protocols", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_protocols_model_set_id"))

    op.drop_table("protocols")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_model_set_id"))

    op.drop_table("members")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_images_patient_id"))
        batch_op.drop_index(batch_op.f("ix_images_cohort"))

    op.drop_table("images")
    with op.batch_alter_table("configurations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_configurations_model_set_id"))

    op.drop_table("configurations")
    op.drop_table("patients")
    op.drop_table("model_sets")
