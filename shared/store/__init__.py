"""The job store: every statement that reads or writes job rows.

Hand-written statements live, named and commented, in `queries.sql`; the modules here give
them typed Python signatures. Nothing outside this package writes `jobs`.
"""
