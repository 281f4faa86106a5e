"""Page render functions. Not named `pages/`: Streamlit treats a pages/ folder next to app.py as old-style
multipage scripts, which breaks deep links such as /upload on a freshly started server."""
