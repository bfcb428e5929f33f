"""`cmq serve`: cmq's REST API (FastAPI on uvicorn) on the same code as the command line."""
