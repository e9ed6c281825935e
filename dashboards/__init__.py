"""Store -> DataFrame views and the Streamlit app. Installed as ``lioneval.dashboards``.

Needs the ``dashboard`` extra for the app: ``pip install 'lioneval[dashboard]'``.
"""
