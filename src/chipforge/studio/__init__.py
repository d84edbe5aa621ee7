"""The studio: a local web app over the pipeline (`chipforge studio`, extra `studio`).

`compute` turns each page's form values into the public API's calls and the rows and charts the
page shows; `app` lays the pages out in Dash and wires them; `server` serves them on 127.0.0.1
behind a random token. docs/studio.md says how to start it and why Dash.
"""
