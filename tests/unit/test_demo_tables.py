"""The demo's top-10 tables: predicted ratings on the 1-5 scale, ids and years, no ranking logits."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
from rich.console import Console

from mlops import demo
from mlops.demo import movie_details, recommendation_table


def _render(table: object) -> str:
    out = io.StringIO()
    Console(file=out, width=100).print(table)
    return out.getvalue()


def test_the_table_shows_ratings_ids_and_years_not_the_ranking_score() -> None:
    movies = pd.DataFrame(
        {
            "movie_id": pd.array([246, 268, 1], dtype="int32"),
            "title": ["Chasing Amy", "Chasing Amy", "Toy Story"],
            "year": pd.array([1997, 1997, None], dtype="Int16"),
            "genres": ["Drama|Romance", "Drama|Romance", "Animation|Children's|Comedy"],
        }
    )
    answer = {
        "fallback": None,
        "recommendations": [
            {"movie_id": 246, "title": "Chasing Amy", "score": 6.698, "rating": 4.2149},
            {"movie_id": 268, "title": "Chasing Amy", "score": 6.512, "rating": 3.9},
            {"movie_id": 1, "title": "Toy Story", "score": 6.1, "rating": 3.5},
        ],
    }
    text = _render(recommendation_table(42, answer, movie_details(movies)))
    lines = [line.split() for line in text.splitlines()]
    assert ["1", "246", "Chasing", "Amy", "1997", "Drama,", "Romance", "4.21"] in lines
    assert ["2", "268", "Chasing", "Amy", "1997", "Drama,", "Romance", "3.90"] in lines
    # A missing year prints empty, not <NA>.
    assert ["3", "1", "Toy", "Story", "Animation,", "Children's,", "Comedy", "3.50"] in lines
    assert "6.698" not in text and "6.70" not in text and "score" not in text
    assert "rating: predicted, 1 to 5" in text


def test_a_cold_start_says_why() -> None:
    answer = {"fallback": "unknown_user", "recommendations": [{"movie_id": 9, "title": "X", "rating": 3.0}]}
    words = " ".join(_render(recommendation_table(7, answer, {})).split())
    assert "Top 10 for user 7 (cold start: unknown_user)" in words


class _Endpoint(BaseHTTPRequestHandler):
    """A stand-in for the serving endpoint: top-K answers carry logits, rating answers ratings."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "k" in body:
            answer = {
                "user_id": body["user_id"],
                "recommendations": [
                    {"movie_id": 246, "title": "Chasing Amy", "score": 6.698},
                    {"movie_id": 268, "title": "Chasing Amy", "score": 6.5},
                ],
                "fallback": None,
            }
        else:
            answer = {
                "user_id": body["user_id"],
                "ratings": [{"movie_id": m, "rating": 4.0 + m / 1000} for m in body["movie_ids"]],
                "fallback": None,
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_recommend_asks_the_rating_tower_for_the_recommended_movies(monkeypatch) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(demo, "PORT", server.server_address[1])
        answer = demo.recommend((42,))[42]
    finally:
        server.shutdown()
        server.server_close()
    assert answer["fallback"] is None
    assert [(r["movie_id"], r["rating"]) for r in answer["recommendations"]] == [(246, 4.246), (268, 4.268)]
