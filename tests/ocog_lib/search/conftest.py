from tests.support.search import fresh_search_data, search_data  # noqa: F401
