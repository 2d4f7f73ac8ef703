"""The course's machinery, kept out of the learner's package ``course_utils``.

- ``checks``: the exercise checks the notebooks call;
- ``standins``: synthetic stand-in datasets that the test set-up writes where real data is missing (smoke mode);
- ``launch``: starting torchrun from a notebook or a test, with a hard timeout and no process left behind;
- ``ddp_worker``: the training worker (with fault injection) that the tests and ``benchmarks/bench_ddp.py`` launch;
- ``lessons``: runs a lesson's ``lesson-code`` cells, so tests and benchmarks reuse the code a lesson shows.

Nothing here is imported by ``course_utils``.
"""
