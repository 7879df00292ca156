"""The store's command-line verbs: ``migrate``, ``run`` (the nightly batch), ``protocol``, ``export-map`` and
``attach-reference``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pipeline.batch.export import KINDS
from pipeline.cli.parsing import metric_settings_file
from pipeline.errors import InputError, NotFoundError, StoreNotReadyError, one_line
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import MetricSettings
from pipeline.settings import Settings
from pipeline.store.schema import DEFAULT_REFERENCE_KIND, REFERENCE_KINDS

log = logging.getLogger(__name__)
CLUSTER_HELP = ("local:N (N worker processes on this machine; local:N:T: T torch threads each, default cores // N) or "
                "tcp://HOST:PORT (a running scheduler; PostgreSQL store only); default: in this process")


def add_verbs(verbs: Any) -> None:
    """Add the verbs to ``python -m pipeline``'s sub-parsers."""
    migrate = verbs.add_parser("migrate", help="upgrade the store (QA_DATABASE_URL) to the code's schema")
    migrate.set_defaults(handler=migrate_command)
    run = verbs.add_parser("run", help="the nightly batch: every configuration on a cohort, into the store")
    run.add_argument("source", type=Path, help="cohort folder (images/, references/), CSV manifest or DICOM root")
    run.add_argument("--models", type=Path, required=True, help="model-set JSON or train-demo-models manifest")
    run.add_argument("--cohort", default="default", help="cohort name of these cases (default: default)")
    run.add_argument("--budget", type=float, default=DEFAULT_FRACTION,
                     help=f"review budget of the stored top-budget mask (default {DEFAULT_FRACTION})")
    run.add_argument("--no-tta", action="store_true", help="leave the TTA configurations out (8x fewer passes)")
    run.add_argument("--sweep", action="store_true",
                     help="also store the sweep's sub-configurations (TTA with 1, 2, 4, 8 views, DE with the first k "
                          "folds, CE with the last k checkpoints, and their combinations) from the same passes: no "
                          "extra forward pass, one more pooling, mapping and metric evaluation each; scalars and "
                          "curves only")
    run.add_argument("--sweep-maps", action="store_true",
                     help="with --sweep: store the sweep configurations' voxel maps and probabilities too")
    run.add_argument("--settings", type=metric_settings_file, default=MetricSettings(),
                     help="JSON file of metric settings (docs/metrics.md, 'Options'; default: the spec's); stored "
                          "with the run and part of every case's input hash")
    run.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if present)")
    run.add_argument("--dry-run", action="store_true", help="list what would run; change nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    run.add_argument("--cluster", help=f"run the cases as tasks on Dask: {CLUSTER_HELP}")
    run.set_defaults(handler=run_command)
    protocol = verbs.add_parser("protocol", help="repeated hold-out temperature fits and TS results of a cohort, "
                                "with the metric settings the batch stored with the cohort's runs")
    protocol.add_argument("--models", type=Path, required=True, help="the model set the batch used")
    protocol.add_argument("--cohort", default="default", help="cohort to split (cases with a reference)")
    protocol.add_argument("--repeats", type=int, default=5, help="seeded splits (default 5)")
    protocol.add_argument("--test-fraction", type=float, default=0.5, help="test share of each split (default 0.5)")
    protocol.add_argument("--seed", type=int, default=0, help="split seed")
    protocol.add_argument("--budget", type=float, default=DEFAULT_FRACTION,
                          help=f"review budget of the stored top-budget mask (default {DEFAULT_FRACTION})")
    protocol.add_argument("--cluster", help="run the independent pieces (one TS configuration of one repeat, or its "
                          f"deployment) as tasks on Dask: {CLUSTER_HELP}")
    protocol.set_defaults(handler=protocol_command)
    export = verbs.add_parser("export-map", help="a stored voxel map as NIfTI on the CT's original grid")
    export.add_argument("--case", required=True, help="case name")
    export.add_argument("--configuration", help="configuration name (not for ct / reference)")
    export.add_argument("--model-set", help="model set name or identity (default: the newest with this configuration)")
    export.add_argument("--map", required=True, choices=KINDS,
                        help="an image map (ct, reference), a result map, or the class probabilities the result was "
                             "scored on (4-D; calibrated for +TS configurations)")
    export.add_argument("--out", type=Path, required=True, help="output .nii.gz")
    export.set_defaults(handler=export_command)
    attach = verbs.add_parser("attach-reference", help="attach a reference that arrived after the batch (RTSTRUCT or "
                              "label image) and recompute the case's stored results from the stored maps")
    attach.add_argument("case", nargs="?", help="case name (or --manifest)")
    attach.add_argument("--reference", type=Path, help="RTSTRUCT (.dcm) in the CT's frame of reference, or a label "
                        "image on the CT's grid")
    attach.add_argument("--manifest", type=Path, help="CSV with the columns case, reference and optionally kind: one "
                        "transaction per row, a bad row never stops the others")
    attach.add_argument("--kind", choices=REFERENCE_KINDS, default=DEFAULT_REFERENCE_KIND,
                        help="final_clinical: the clinician's final contour (its error map is the clinician's edit); "
                             f"research: any other reference (default {DEFAULT_REFERENCE_KIND}: a reference is shown "
                             "as the clinician's edit only when declared so)")
    attach.set_defaults(handler=attach_command)


def migrate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Alembic upgrade to head."""
    from alembic import command

    from pipeline.store.database import alembic_config

    url = settings.database_url
    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as error:  # unreachable server, refused login, unopenable SQLite file
        shown = make_url(url).render_as_string(hide_password=True)
        raise StoreNotReadyError(f"cannot open the store {shown}: {one_line(error.orig or error)}") from error
    sys.stdout.write(f"store at head: {url}\n")
    return 0


def _model_set(path: Path):  # a ModelSet (inference types load lazily)
    from pipeline.inference.model_set import load_model_set_file

    return load_model_set_file(path)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """The batch; exit 1 when a case failed, 2 on bad input or a store that is not ready."""
    from pipeline.batch.cases import discover
    from pipeline.batch.runner import BatchOptions, print_summary, run_batch

    if not 0 <= args.budget <= 1:
        raise InputError(f"--budget must be in [0, 1], got {args.budget}")
    cluster = _cluster(args.cluster, settings.database_url)
    cases = tuple(discover(args.source, args.cohort, settings.mrn_salt))
    options = BatchOptions(cases=cases, model_set=_model_set(args.models), models_source=str(args.models),
                           database_url=settings.database_url, artifacts=settings.artifacts_dir, budget=args.budget,
                           settings=args.settings,
                           tta=not args.no_tta, sweep=args.sweep or args.sweep_maps, sweep_maps=args.sweep_maps,
                           device=args.device, dry_run=args.dry_run,
                           progress=not args.no_progress and sys.stderr.isatty(), max_voxels=settings.max_voxels)
    if cluster is None:
        summary = run_batch(options)
    else:
        from pipeline.batch.cluster import DaskCases, connect, needs_gpu

        with connect(cluster, needs_gpu(args.device)) as client:
            summary = run_batch(options, DaskCases(client))
    sys.stdout.write(print_summary(summary, cases) + "\n")
    return summary.exit_code


def _cluster(text: str | None, database_url: str):  # a ClusterSpec or None (Dask loads only for --cluster)
    if text is None:
        return None
    from pipeline.batch.cluster import check_store, parse_cluster

    spec = parse_cluster(text)
    check_store(spec, database_url)
    return spec


def protocol_command(args: argparse.Namespace, settings: Settings) -> int:
    """The protocol stage in one transaction (its pieces on a Dask cluster with ``--cluster``)."""
    from pipeline.batch.protocol_stage import ProtocolOptions, run_protocol
    from pipeline.store.artifacts import ArtifactStore
    from pipeline.store.database import check_at_head, make_engine, refresh_statistics, session_factory
    from pipeline.store.schema import ModelSet

    if args.repeats < 1 or not 0 < args.test_fraction < 1 or not 0 <= args.budget <= 1:
        raise InputError(f"--repeats must be >= 1, --test-fraction in (0, 1) and --budget in [0, 1]; got "
                         f"{args.repeats}, {args.test_fraction}, {args.budget}")
    cluster = _cluster(args.cluster, settings.database_url)
    identity = _model_set(args.models).identity()
    artifacts = ArtifactStore(settings.artifacts_dir)
    engine = make_engine(settings.database_url)
    check_at_head(engine)
    artifacts.check_writable()
    options = ProtocolOptions(cohort=args.cohort, repeats=args.repeats, test_fraction=args.test_fraction,
                              seed=args.seed, budget=args.budget)
    with session_factory(engine).begin() as session:
        model_set = session.scalar(select(ModelSet).where(ModelSet.identity == identity))
        if model_set is None:
            raise NotFoundError(f"{args.models}: this model set has no processed case in the store; "
                                "run the batch first")
        if cluster is None:
            protocol = run_protocol(session, artifacts, model_set, options)
        else:
            from pipeline.batch.cluster import DaskPieces, connect

            with connect(cluster) as client:
                protocol = run_protocol(session, artifacts, model_set, options, DaskPieces(client))
        sys.stdout.write(f"protocol {protocol.id}: cohort {args.cohort}, {args.repeats} repeats stored\n")
    refresh_statistics(engine)
    engine.dispose()
    return 0


def export_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write one stored map as NIfTI."""
    from pipeline.batch.export import export_map

    path = export_map(settings.database_url, settings.artifacts_dir, args.case, args.configuration, args.map, args.out,
                      args.model_set)
    sys.stdout.write(f"wrote {path}\n")
    return 0


def attach_command(args: argparse.Namespace, settings: Settings) -> int:
    """Attach one reference (a mistake: one line, exit 2) or a manifest's (exit 1 when a row failed)."""
    from pipeline.batch.attach import AttachRequest, attach_references, requests_from_manifest

    if (args.manifest is None) == (args.case is None) or (args.case is not None) != (args.reference is not None):
        raise InputError("give a case and --reference, or --manifest")
    if args.manifest is not None:
        requests = requests_from_manifest(args.manifest, args.kind)
    else:
        requests = [AttachRequest(args.case, args.reference, args.kind)]
    summary = attach_references(settings.database_url, settings.artifacts_dir, requests, settings.max_voxels,
                                isolate=args.manifest is not None)
    sys.stdout.write("\n".join(summary.lines()) + "\n")
    return summary.exit_code
