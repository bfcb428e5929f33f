"""Moving files between this host and machines: copies, staging of job inputs and outputs, the input cache."""
