"""The endpoint table's request models as both sides use them: route() refuses a handler that
would not be validated by its endpoint's model, and a client's query comes back as it was meant."""

from typing import Annotated

import pytest
from fastapi import FastAPI, Query

from petwatch import endpoints
from petwatch.daemon.routing import route
from petwatch.endpoints import EndpointCalls, PhotoQuery, SearchRequest, ThumbnailQuery


def test_a_handler_must_take_its_endpoints_model_a_query_from_the_query_string():
    app = FastAPI()
    with pytest.raises(TypeError, match=r"must take a SearchRequest"):
        route(app, endpoints.SEARCH)(lambda top_k: None)
    with pytest.raises(TypeError, match=r"must take Annotated\[PhotoQuery, Query\(\)\]"):

        def read_from_the_body(query: PhotoQuery) -> None: ...

        route(app, endpoints.PHOTO)(read_from_the_body)

    def search(request: SearchRequest) -> None: ...

    def photo(query: Annotated[PhotoQuery, Query()]) -> None: ...

    route(app, endpoints.SEARCH)(search)
    route(app, endpoints.PHOTO)(photo)


def test_a_get_takes_a_query_and_another_method_a_body():
    with pytest.raises(TypeError, match="a GET takes a Query"):
        endpoints.Endpoint("POST", "/x", None, request=PhotoQuery)
    with pytest.raises(TypeError, match="a GET takes a Query"):
        endpoints.Endpoint("GET", "/x", None, request=SearchRequest)
    with pytest.raises(TypeError, match="takes no body"):
        endpoints.THUMBNAIL.body(path="/x.jpg")


def test_a_query_is_sent_as_its_model_reads_it_back():
    name = "/photos/caf\udce9.jpg"  # not UTF-8: sent as b64:, decoded by the daemon's model
    sent = EndpointCalls.__dict__["thumbnail"].build(None, name, 128)["params"]
    assert sent["path"].startswith("b64:")
    read = ThumbnailQuery.model_validate(sent)
    assert (read.path, read.size) == (name, 128)
    assert EndpointCalls.__dict__["groups"].build(None)["params"] == {"all": False}
