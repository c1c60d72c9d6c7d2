"""The API's views, one module per resource group; api/urls.py routes them."""
