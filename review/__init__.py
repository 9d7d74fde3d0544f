"""Review: agreement statistics (stats), evidence gates (gates), the SQL behind reports (query) and
the report itself (report, html). Imports only `db` of ours; the QA lead's window is in review.ui."""
