"""The Streamlit dashboard: entry point ``app/streamlit_app.py``, one file per page, one caching module."""
