"""Passes over the sparsec IR (installed as ``sparsec.passes``): the pass manager, pattern
rewriting, and one file per pass.

    pm = sc.passes.PassManager.parse("canonicalize,cse,dce")
    g2 = pm.run(g)
"""
from .registry import (PASSES, PIPELINES, Pass, PassFailure, PipelineError, Statistics, option, parse_pipeline,
                       pipeline_names, register_pass)
from .rewrite import Pattern, RewriteError, Rewriter, apply_patterns, is_trivially_dead
from .manager import PassManager, PassRecord
from . import canonicalize, cse, dce, fold_constants, fuse_elementwise, infer_shapes  # noqa: F401,E402  (register)
from . import expert_fusion, sparse_activation  # noqa: F401,E402  (register)
from . import activation_sparsity  # noqa: F401,E402  (register; opt-in, not in the default pipeline)
from . import quantize  # noqa: F401,E402  (register; opt-in: sc.compile(quantize=...) appends it)
from . import fuse_projections  # noqa: F401,E402  (register; sc.compile runs it last with default)
from . import fuse_router  # noqa: F401,E402  (register)

#: what ``sc.compile`` and ``sparsec compile`` run unless told otherwise. Canonicalization only
#: tidies: every later pass is correct without it (tests run the pipeline with and without).
PIPELINES["default"] = ("sparse-activation,expert-fusion,fuse-router,canonicalize,cse,dce,fold-constants{fold-params=true},"
                        "fuse-elementwise")
PIPELINES["classic"] = "canonicalize,cse,dce"

__all__ = [
    "PASSES", "PIPELINES", "Pass", "PassFailure", "PassManager", "PassRecord", "Pattern", "PipelineError",
    "RewriteError", "Rewriter", "Statistics", "apply_patterns", "is_trivially_dead", "option", "parse_pipeline",
    "pipeline_names", "register_pass",
]
