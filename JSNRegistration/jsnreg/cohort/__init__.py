"""Cohorts: many patients, many visits, measured on Dask into a resumable SQLite store.

manifest (CSV -> visits and their problems) -> plan (which pairs to register) -> run (Dask tasks,
results written as each finishes) -> trajectories (JSN against time, rates, transitivity, SDC)
-> report (CSV/Parquet tables, offline HTML). Nothing here imports dask at module level but run.py.
"""
