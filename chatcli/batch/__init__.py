"""Bulk work (issue 18): many one-shot asks from a file, run through the provider's Batch API or
here, N at a time, each row's result kept as it comes, and joined back to input order."""
