"""CXR Explorer: the router. Sets the page config, draws the shared sidebar, runs the chosen page."""
import streamlit as st

import app_services as svc

st.set_page_config(page_title="CXR Explorer", page_icon="🩻", layout="wide")
svc.init_state()
svc.keep_keras_state()  # no Keras clear_session nor full GC after every run (app_services.serving)
svc.resume_audits()  # once per server: audits that a restart cut short start again

pages = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/dataset.py", title="Dataset", icon=":material/photo_library:"),
    st.Page("views/preprocessing.py", title="Preprocessing", icon=":material/tune:"),
    st.Page("views/training.py", title="Training", icon=":material/model_training:"),
    st.Page("views/evaluation.py", title="Evaluation", icon=":material/analytics:"),
    st.Page("views/explain.py", title="Explain", icon=":material/visibility:"),
    st.Page("views/audit.py", title="Audit", icon=":material/policy:"),
    st.Page("views/review.py", title="Review", icon=":material/rate_review:"),
]
page = st.navigation(pages)

with st.sidebar:
    st.text_input("Dataset folder", key=svc.DATA_DIR,
                  help="One sub-folder per class, the COVID-19 Radiography Database, Kermany's "
                       "chest_xray, or a folder with a manifest.csv. Default: CXR_DATA_DIR or data/.")
    status = svc.dataset_status()
    if status.level == "ok":
        st.success(status.message, icon=":material/check_circle:")
    else:
        (st.warning if status.level == "empty" else st.error)(status.message,
                                                             icon=":material/folder_off:")
    st.radio("Task", list(svc.TASK_LABELS), format_func=svc.TASK_LABELS.get, key=svc.TASK)
    svc.current_run_ui(status)

svc.show_notices()  # on the page the user is on: e.g. its run was deleted meanwhile
page.run()
