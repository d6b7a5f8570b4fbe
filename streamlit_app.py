"""CXR Explorer: the router. Pages live in pages/; this file sets the page config and navigation."""
import streamlit as st

st.set_page_config(page_title="CXR Explorer", page_icon="🩻", layout="wide")
st.title("CXR Explorer")
st.write("Explainable COVID-19 / Normal / Viral Pneumonia classification of chest X-rays.")
