"""User interface (Streamlit)."""
