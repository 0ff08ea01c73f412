"""The organisation itself: its model and its settings page (admin).

Unlike the other feature packages, importing this one does not import its routes: the
members' model imports the organisation's, and the routes import the members'. The app
factory imports ``portal.organizations.routes`` when it registers the blueprint.
"""

from flask import Blueprint

bp = Blueprint("organizations", __name__)
