"""Checkpoint files: safe reading and writing, flags, schedules, formats, the public catalogue and downloads.

* :mod:`~invkit_priors.checkpoints.safe_load`: state dicts read without unpickling code, strict
  key/shape checks, and the one state-dict writer.
* :mod:`~invkit_priors.checkpoints.flags`: architecture flags in every accepted form.
* :mod:`~invkit_priors.checkpoints.schedule`: the diffusion process (ᾱ_t) from flags or metadata.
* :mod:`~invkit_priors.checkpoints.invkit_format`: invkit's own prior file (one reader, one writer).
* :mod:`~invkit_priors.checkpoints.diffusers_folder`: diffusers model folders (optional extra).
* :mod:`~invkit_priors.checkpoints.load`: any ADM/DDPM/invkit file or diffusers folder -> a prior.
* :mod:`~invkit_priors.checkpoints.catalogue`: the public checkpoints (``catalogue.json``).
* :mod:`~invkit_priors.checkpoints.download`: verified, resumable downloads into the cache.
* :mod:`~invkit_priors.checkpoints.commands`: ``invkit prior list|fetch``.

Submodules are imported on use (the catalogue and downloads need no torch network code).
"""
