"""difflab studio: the browser front end over sample.py's library (studio/app.py)."""
