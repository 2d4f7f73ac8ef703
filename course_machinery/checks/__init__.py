"""The exercise checks, one module per lesson: a notebook imports its own, ``from course_machinery.checks import
lesson02 as checks``, and calls ``checks.<exercise>(answer)`` in the exercise's check cell, then
``checks.grade(checks.<exercise>, answer)`` in the cell's hidden tests (nbgrader removes those from the student
edition and puts them back when it grades).

A check prints one line, ✅ or ❌ with a hint that points at the idea and never at the answer, returns a ``Verdict``
and never raises for a wrong answer; it computes what it expects from inputs it chooses, and refuses the ways of
passing without understanding (``_feedback.watch_calls``, ``_feedback.typed_as_literal``). How an exercise is
written: ``EXERCISES.md`` beside this file. Nothing here is imported by ``course_utils``.
"""
