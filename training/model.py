"""The Keras recommender: a biased matrix factorisation with feature towers, in the contract's scoring form.

Two Keras models are built here. The training model works on dense row indices and carries what only
training needs (the SVD++-like implicit term, id dropout, the ranking head). The serving model is
built from the exported towers with Keras' built-in layers only, so `keras/model.keras` loads without
this package; it computes exactly what docs/contracts.md section 3 says serving computes in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from training.hyperparameters import Hyperparameters

RATING_RANGE = (1.0, 5.0)

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelTables:
    """The constant per-row tables the training model reads (row 0 is the 'unknown' row on both sides)."""

    n_users: int  # known users; rows 1..n_users
    n_movies: int  # catalog movies; rows 1..n_movies
    user_z: Array  # (n_users + 1, f): standardized user features, row 0 zeros
    movie_x: Array  # (n_movies + 1, g): movie features, row 0 zeros
    movie_seen: Array  # (n_movies + 1,): 1 where the movie has a training rating
    rated_splits: npt.NDArray[np.int64]  # (n_users + 2,): CSR row splits of the user -> rated movie rows
    rated_rows: npt.NDArray[np.int32]  # movie rows each user rated, concatenated
    rated_recency: npt.NDArray[np.int32]  # per entry: 0 for the user's latest rating, 1 the one before, ...
    global_mean: float


class HistoryProduct:
    """A user's weighted history of rated movies, times a per-movie table: W @ Y for all users at once.

    W is (n_users + 1) x (n_movies + 1). Dense when small enough (a dense product is ~3x faster than
    TensorFlow's sparse one at MovieLens densities on CPU), else sparse.
    """

    # Dense pays while it does at most ~32x the multiply-adds of the sparse product and fits in memory.
    DENSE_RATIO = 32
    DENSE_MAX_BYTES = 512 * 2**20

    def __init__(self, tables: ModelTables, weights: npt.NDArray[np.float32]) -> None:
        t = tables
        self.weights = weights
        self.rows = np.repeat(np.arange(t.n_users + 1, dtype=np.int64), np.diff(t.rated_splits))
        self.cols = t.rated_rows.astype(np.int64)
        self.shape = (t.n_users + 1, t.n_movies + 1)
        cells = self.shape[0] * self.shape[1]
        self.dense = cells <= self.DENSE_RATIO * max(weights.size, 1) and cells * 4 <= self.DENSE_MAX_BYTES
        # A variable, not a graph constant: a large constant costs seconds of graph optimisation at every
        # trace. Held in a tuple so Keras does not count it among the model's weights (it is data).
        self._dense: tuple[tf.Variable, ...] = ()
        if self.dense:
            w = np.zeros(self.shape, np.float32)
            w[self.rows, self.cols] = self.weights
            self._dense = (tf.Variable(w, trainable=False, name="history_matrix"),)

    def matrix(self) -> tf.Tensor | tf.SparseTensor:
        """The weight matrix (dense or sparse, see the class docstring)."""
        if self._dense:
            return self._dense[0]
        return tf.SparseTensor(
            indices=tf.constant(np.stack([self.rows, self.cols], axis=1)),
            values=tf.constant(self.weights),
            dense_shape=list(self.shape),
        )

    def product(self, table: tf.Variable) -> tf.Tensor:
        """W @ table, one row per user row."""
        w = self.matrix()
        if isinstance(w, tf.SparseTensor):
            return tf.sparse.sparse_dense_matmul(w, table)
        return tf.matmul(w, table)

    def fold(self, table: Array) -> Array:
        """W @ table in NumPy (for the export)."""
        out = np.zeros((self.shape[0], table.shape[1]), np.float64)
        np.add.at(out, self.rows, self.weights[:, None].astype(np.float64) * table[self.cols])
        return out.astype(np.float32)


@keras.saving.register_keras_serializable(package="mlops_training")
class Recommender(keras.layers.Layer):  # type: ignore[misc]
    """Two towers in one layer: the rating score of (user row, movie row) pairs and, when the ranking
    head is on, a separate ranking score of every catalog movie for the pair's user.

    The two share no parameter, so the ranking loss cannot pull the rating fit (and the reverse).
    """

    def __init__(self, tables: ModelTables, hp: Hyperparameters, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.tables = tables
        self.hp = hp
        d = hp.embedding_dim
        f = tables.user_z.shape[1]
        g = tables.movie_x.shape[1]
        small = keras.initializers.RandomNormal(stddev=0.01)
        self.user_vec = self.add_weight(shape=(tables.n_users + 1, d), initializer=small, name="user_vec")
        self.user_bias = self.add_weight(shape=(tables.n_users + 1,), initializer="zeros", name="user_bias")
        self.movie_vec = self.add_weight(shape=(tables.n_movies + 1, d), initializer=small, name="movie_vec")
        self.movie_bias = self.add_weight(
            shape=(tables.n_movies + 1,), initializer="zeros", name="movie_bias"
        )
        self.implicit_vec = self.add_weight(
            shape=(tables.n_movies + 1, d), initializer=small, name="implicit_vec", trainable=hp.implicit
        )
        self.user_feat_w = self.add_weight(shape=(f, d), initializer=small, name="user_feature_weights")
        self.user_feat_b = self.add_weight(shape=(f,), initializer="zeros", name="user_feature_bias_weights")
        self.movie_feat_w = self.add_weight(shape=(g, d), initializer=small, name="movie_feature_weights")
        self.movie_feat_b = self.add_weight(
            shape=(g,), initializer="zeros", name="movie_feature_bias_weights"
        )
        self.global_bias = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(tables.global_mean), name="global_bias"
        )
        # Plain NumPy copies; turned into graph constants in call(), so Keras never tries to track them.
        self._weights = implicit_weights(tables.rated_splits, tables.rated_recency, hp.implicit_half_life)
        self._history = HistoryProduct(tables, self._weights)
        # Row 0 (unknown) never carries an id vector or bias: masks keep it exactly zero.
        self._user_known = np.ones(tables.n_users + 1, dtype=np.float32)
        self._user_known[0] = 0.0
        self.ranking = hp.ranking_weight > 0
        if self.ranking:
            r = hp.ranking_dim
            self.rank_user_vec = self.add_weight(
                shape=(tables.n_users + 1, r), initializer=small, name="rank_user_vec"
            )
            self.rank_history_vec = self.add_weight(
                shape=(tables.n_movies + 1, r), initializer=small, name="rank_history_vec"
            )
            self.rank_user_feat_w = self.add_weight(
                shape=(f, r), initializer=small, name="rank_user_feature_weights"
            )
            self.rank_movie_vec = self.add_weight(
                shape=(tables.n_movies + 1, r), initializer=small, name="rank_movie_vec"
            )
            self.rank_movie_bias = self.add_weight(
                shape=(tables.n_movies + 1,), initializer="zeros", name="rank_movie_bias"
            )
            self.rank_movie_feat_w = self.add_weight(
                shape=(g, r), initializer=small, name="rank_movie_feature_weights"
            )
            self.rank_movie_feat_b = self.add_weight(
                shape=(g,), initializer="zeros", name="rank_movie_feature_bias_weights"
            )
            self._rank_weights = implicit_weights(
                tables.rated_splits, tables.rated_recency, hp.ranking_half_life
            )
            self._rank_history = HistoryProduct(tables, self._rank_weights)

    def user_side(self, user: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(user vector, user bias, id-part L2 penalty) for a batch of user rows."""
        known = tf.gather(tf.constant(self._user_known), user) * keep
        id_vec = tf.gather(self.user_vec, user)
        id_bias = tf.gather(self.user_bias, user)
        if self.hp.implicit:
            # One product for every user per step is cheaper on CPU than a ragged gather of every batch
            # user's rated movies, and its gradient is a second product.
            id_vec_total = id_vec + tf.gather(self._history.product(self.implicit_vec), user)
        else:
            id_vec_total = id_vec
        z = tf.gather(tf.constant(self.tables.user_z), user)
        vec = known[:, None] * id_vec_total + tf.matmul(z, self.user_feat_w)
        bias = known * id_bias + tf.linalg.matvec(z, self.user_feat_b)
        return vec, bias, self._penalty(id_vec, id_bias)

    def _penalty(self, id_vec: tf.Tensor, id_bias: tf.Tensor) -> tf.Tensor:
        """Per-example L2 of the id parameters a batch touches (like SGD matrix factorisation's)."""
        return self.hp.l2_embedding * tf.reduce_sum(tf.square(id_vec), axis=1) + self.hp.l2_bias * tf.square(
            id_bias
        )

    def movie_side(self, movie: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(movie vector, movie bias, id-part L2 penalty) for a batch of movie rows."""
        seen = tf.gather(tf.constant(self.tables.movie_seen), movie)
        id_vec = tf.gather(self.movie_vec, movie)
        id_bias = tf.gather(self.movie_bias, movie)
        x = tf.gather(tf.constant(self.tables.movie_x), movie)
        vec = seen[:, None] * id_vec + tf.matmul(x, self.movie_feat_w)
        bias = seen * id_bias + tf.linalg.matvec(x, self.movie_feat_b)
        return vec, bias, self._penalty(id_vec, id_bias)

    def rank_user_side(
        self, user: tf.Tensor, movie: tf.Tensor, keep: tf.Tensor, history_weight: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(ranking user vector, id-part L2 penalty): id vector + weighted history + feature map.

        The pair's own movie is taken out of the user's history (`history_weight` is its weight
        there), so the softmax cannot learn "a user likes what is in their history" (an identity
        that is useless once serving excludes rated movies).
        """
        known = tf.gather(tf.constant(self._user_known), user) * keep
        id_vec = tf.gather(self.rank_user_vec, user)
        history = tf.gather(self._rank_history.product(self.rank_history_vec), user)
        history -= history_weight[:, None] * tf.gather(self.rank_history_vec, movie)
        z = tf.gather(tf.constant(self.tables.user_z), user)
        vec = known[:, None] * (id_vec + history) + tf.matmul(z, self.rank_user_feat_w)
        return vec, self.hp.ranking_l2 * tf.reduce_sum(tf.square(id_vec), axis=1)

    def rank_movie_side(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(ranking vectors, ranking biases) of every movie row, row 0 included."""
        seen = tf.constant(self.tables.movie_seen)
        x = tf.constant(self.tables.movie_x)
        vec = seen[:, None] * self.rank_movie_vec + tf.matmul(x, self.rank_movie_feat_w)
        bias = seen * self.rank_movie_bias + tf.linalg.matvec(x, self.rank_movie_feat_b)
        return vec, bias

    def call(
        self,
        user: tf.Tensor,
        movie: tf.Tensor,
        keep: tf.Tensor | None = None,
        history_weight: tf.Tensor | None = None,
        with_ranking: bool = False,
    ) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        """Rating score of each pair; with `with_ranking`, also the user's ranking logits over the catalog."""
        user = tf.cast(tf.reshape(user, [-1]), tf.int32)
        movie = tf.cast(tf.reshape(movie, [-1]), tf.int32)
        keep_t = tf.ones_like(movie, dtype=tf.float32) if keep is None else tf.reshape(keep, [-1])
        uv, ub, ureg = self.user_side(user, keep_t)
        mv, mb, mreg = self.movie_side(movie)
        rating = self.global_bias + ub + mb + tf.reduce_sum(uv * mv, axis=1)
        self.add_loss(tf.reduce_mean(ureg + mreg))
        self.add_loss(
            self.hp.l2_feature
            * (
                tf.reduce_sum(tf.square(self.user_feat_w))
                + tf.reduce_sum(tf.square(self.movie_feat_w))
                + tf.reduce_sum(tf.square(self.user_feat_b))
                + tf.reduce_sum(tf.square(self.movie_feat_b))
            )
        )
        if not (with_ranking and self.ranking):
            return rating
        hw = tf.zeros_like(keep_t) if history_weight is None else tf.reshape(history_weight, [-1])
        ru, rreg = self.rank_user_side(user, movie, keep_t, hw)
        av, ab = self.rank_movie_side()
        self.add_loss(
            self.hp.ranking_weight
            * (
                tf.reduce_mean(rreg)
                + self.hp.l2_feature
                * (
                    tf.reduce_sum(tf.square(self.rank_user_feat_w))
                    + tf.reduce_sum(tf.square(self.rank_movie_feat_w))
                )
            )
        )
        # Full softmax over the catalog: the rated movie against every other one.
        logits = (tf.matmul(ru, av, transpose_b=True) + ab[None, :]) / self.hp.ranking_temperature
        unknown_row = tf.one_hot(0, self.tables.n_movies + 1, on_value=-1e9, off_value=0.0)
        return rating, logits + unknown_row[None, :]

    def towers(self) -> dict[str, Array]:
        """The learned parameters folded into the contract's towers (known users, catalog movies)."""
        t = self.tables
        user_vec = self.user_vec.numpy()
        if self.hp.implicit:
            user_vec = user_vec + self._history.fold(self.implicit_vec.numpy())
        seen = t.movie_seen
        movie_vectors = seen[:, None] * self.movie_vec.numpy() + t.movie_x @ self.movie_feat_w.numpy()
        movie_bias = seen * self.movie_bias.numpy() + t.movie_x @ self.movie_feat_b.numpy()
        out = {
            "movie_vectors": movie_vectors[1:].astype(np.float32),
            "movie_bias": movie_bias[1:].astype(np.float32),
            "global_bias": np.asarray(self.global_bias.numpy(), dtype=np.float32),
            "user_id_vectors": user_vec[1:].astype(np.float32),
            "user_id_bias": self.user_bias.numpy()[1:].astype(np.float32),
            "user_feature_weights": self.user_feat_w.numpy().astype(np.float32),
            "user_feature_bias_weights": self.user_feat_b.numpy().astype(np.float32),
        }
        if self.ranking:
            # The temperature is folded into the movie side, so the exported score is the trained logit.
            inv_t = 1.0 / self.hp.ranking_temperature
            rank_user = self.rank_user_vec.numpy() + self._rank_history.fold(self.rank_history_vec.numpy())
            rank_vec = (
                seen[:, None] * self.rank_movie_vec.numpy() + t.movie_x @ self.rank_movie_feat_w.numpy()
            )
            rank_bias = seen * self.rank_movie_bias.numpy() + t.movie_x @ self.rank_movie_feat_b.numpy()
            out.update(
                rank_movie_vectors=(rank_vec[1:] * inv_t).astype(np.float32),
                rank_movie_bias=(rank_bias[1:] * inv_t).astype(np.float32),
                rank_user_id_vectors=rank_user[1:].astype(np.float32),
                rank_user_feature_weights=self.rank_user_feat_w.numpy().astype(np.float32),
            )
        return out


def implicit_weights(
    splits: npt.NDArray[np.int64], recency: npt.NDArray[np.int32], half_life: float
) -> npt.NDArray[np.float32]:
    """Weight of each rated movie in its user's implicit term: halves every `half_life` ratings back in
    time (0: all equal), scaled so a user's weights have unit norm, like SVD++'s |N(u)|^-1/2."""
    w = np.ones(recency.size) if half_life <= 0 else np.power(0.5, recency / half_life)
    rows = np.repeat(np.arange(splits.size - 1), np.diff(splits))
    norms = np.sqrt(np.bincount(rows, weights=w**2, minlength=splits.size - 1))
    return (w / np.maximum(norms[rows], 1e-12)).astype(np.float32)


def build_training_model(tables: ModelTables, hp: Hyperparameters) -> tuple[keras.Model, Recommender]:
    """The functional training model (named index inputs; outputs `rating` and, if ranking, `ranking`)."""
    user = keras.Input(shape=(), dtype="int32", name="user_index")
    movie = keras.Input(shape=(), dtype="int32", name="movie_index")
    keep = keras.Input(shape=(), dtype="float32", name="id_keep")
    core = Recommender(tables, hp, name="recommender")
    inputs = {"user_index": user, "movie_index": movie, "id_keep": keep}
    if hp.ranking_weight > 0:
        history_weight = keras.Input(shape=(), dtype="float32", name="history_weight")
        inputs["history_weight"] = history_weight
        rating, logit = core(user, movie, keep, history_weight, with_ranking=True)
        outputs = {
            "rating": keras.layers.Identity(name="rating")(rating),
            "ranking": keras.layers.Identity(name="ranking")(logit),
        }
    else:
        rating = core(user, movie, keep)
        outputs = {"rating": keras.layers.Identity(name="rating")(rating)}
    return keras.Model(inputs=inputs, outputs=outputs, name="recommender_training"), core


def build_serving_model(towers: dict[str, npt.NDArray[np.generic]]) -> keras.Model:
    """A Keras model of the contract's scoring form, from towers alone, with built-in layers only.

    Inputs: `user_id` (int64), `movie_id` (int64), `user_features` (float32, in the metadata's
    user_feature_names order, no missing values). Output: `rating`, clipped to the rating range.
    An unknown user gets the feature part only; an unknown movie gets the global bias only.
    """
    user_ids = np.asarray(towers["user_ids"], dtype=np.int64)
    movie_ids = np.asarray(towers["movie_ids"], dtype=np.int64)
    d = int(np.asarray(towers["movie_vectors"]).shape[1])
    f = int(np.asarray(towers["feature_mean"]).shape[0])
    global_bias = float(np.asarray(towers["global_bias"]))

    user_id = keras.Input(shape=(), dtype="int64", name="user_id")
    movie_id = keras.Input(shape=(), dtype="int64", name="movie_id")
    features = keras.Input(shape=(f,), dtype="float32", name="user_features")

    user_row = keras.layers.IntegerLookup(vocabulary=user_ids, num_oov_indices=1, name="user_row")(user_id)
    movie_row = keras.layers.IntegerLookup(vocabulary=movie_ids, num_oov_indices=1, name="movie_row")(
        movie_id
    )
    user_vec_layer = keras.layers.Embedding(user_ids.size + 1, d, name="user_id_vectors")
    user_bias_layer = keras.layers.Embedding(user_ids.size + 1, 1, name="user_id_bias")
    movie_vec_layer = keras.layers.Embedding(movie_ids.size + 1, d, name="movie_vectors")
    movie_bias_layer = keras.layers.Embedding(movie_ids.size + 1, 1, name="movie_bias")
    std = np.asarray(towers["feature_std"], dtype=np.float32)
    norm = keras.layers.Normalization(
        mean=np.asarray(towers["feature_mean"], dtype=np.float32), variance=std**2, name="standardize"
    )
    feat_vec_layer = keras.layers.Dense(d, use_bias=False, name="user_feature_weights")
    feat_bias_layer = keras.layers.Dense(1, use_bias=False, name="user_feature_bias_weights")

    z = norm(features)
    user_vec = keras.layers.Add(name="user_vector")([user_vec_layer(user_row), feat_vec_layer(z)])
    movie_vec = movie_vec_layer(movie_row)
    dot = keras.layers.Dot(axes=1, name="affinity")([user_vec, movie_vec])
    score = keras.layers.Add(name="score_minus_global")(
        [dot, user_bias_layer(user_row), feat_bias_layer(z), movie_bias_layer(movie_row)]
    )
    lo, hi = RATING_RANGE
    shifted = keras.layers.Rescaling(1.0, offset=global_bias - lo, name="score_minus_floor")(score)
    clipped = keras.layers.ReLU(max_value=hi - lo, name="clip")(shifted)
    rating = keras.layers.Rescaling(1.0, offset=lo, name="rating_2d")(clipped)
    rating = keras.layers.Flatten(name="rating")(rating)
    model = keras.Model(
        inputs={"user_id": user_id, "movie_id": movie_id, "user_features": features},
        outputs={"rating": rating},
        name="recommender",
    )

    def with_zero_row(values: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        arr = np.asarray(values, dtype=np.float32)
        arr = arr.reshape(arr.shape[0], -1)
        return np.concatenate([np.zeros((1, arr.shape[1]), dtype=np.float32), arr])

    user_vec_layer.set_weights([with_zero_row(towers["user_id_vectors"])])
    user_bias_layer.set_weights([with_zero_row(towers["user_id_bias"])])
    movie_vec_layer.set_weights([with_zero_row(towers["movie_vectors"])])
    movie_bias_layer.set_weights([with_zero_row(towers["movie_bias"])])
    feat_vec_layer.set_weights([np.asarray(towers["user_feature_weights"], dtype=np.float32)])
    feat_bias_layer.set_weights(
        [np.asarray(towers["user_feature_bias_weights"], dtype=np.float32).reshape(f, 1)]
    )
    return model
