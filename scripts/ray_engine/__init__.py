"""`imagesearch build --engine ray`: the embed stage on Ray Data, the rest as the local engine does it.

- cluster.py    the optional extra, joining a cluster or starting a local Ray, workers alive
- plan.py       how many workers with how many CPUs/GPUs (pure arithmetic, table-tested)
- reading.py    sources: the driver's rows and Ray Data's readers for them, keyed alike
- decoding.py   decode tasks: the local engine's decoder and the model's processor up to the crop
- worker.py     the actor: the model loaded once, one part per batch
- parts.py      the work folder: parts, resume, gathering them back into build order
- pipeline.py   the Ray Data pipeline and its progress line
"""
