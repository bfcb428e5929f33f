"""The small core every step uses: errors, defaults, the clock, hostlists, private files, job data."""
