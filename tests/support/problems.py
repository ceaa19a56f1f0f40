"""Malformed requests and the problem+json answers they must get (SPEC section 5).

``BAD_REQUESTS`` is the catalogue of bad requests that ``tests/test_bad_inputs.py`` sends one by
one and ``tests/test_security.py`` replays looking for leaks; ``assert_problem`` checks an answer.
Statuses and codes come from SPEC section 5 and the error tree in service/errors.py; which check
raises which error is in service/codecs/ and service/core.py.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson

JSON = {"content-type": "application/json"}
MSE = "/loss/mse"
BIG = 100_000  # elements in the "long input" cases
MAX_ERROR_BYTES = 2048  # an error body is short: no input is echoed back (service/errors.py)
DROP = object()  # a field value that removes the field


def body(**fields: Any) -> bytes:
    """A request body: predictions and targets [1.0, 2.0] unless given; ``DROP`` removes one."""
    doc = {"predictions": [1.0, 2.0], "targets": [1.0, 2.0], **fields}
    return orjson.dumps({key: value for key, value in doc.items() if value is not DROP})


def packed(values: Any, kind: str = "float64", **override: Any) -> dict[str, Any]:
    """A packed array (SPEC section 2) of ``values``; ``override`` replaces, adds or drops keys."""
    array = np.ascontiguousarray(values, dtype=np.dtype(kind).newbyteorder("<"))
    doc: dict[str, Any] = {
        "dtype": kind,
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }
    doc.update(override)
    return {key: value for key, value in doc.items() if value is not DROP}


def long_packed(data: bytes, n: int = BIG // 10) -> bytes:
    """A body of packed float64 predictions and targets of ``n`` elements; ``data`` goes in raw."""
    # over 64 KiB of base64: the service cuts the literal out before parsing (service/body.py)
    good = packed(np.arange(n, dtype=np.float64))
    return b"".join(
        [
            b'{"predictions": {"dtype": "float64", "shape": [%d], "data": "' % n,
            data,
            b'"}, "targets": ',
            orjson.dumps(good),
            b"}",
        ]
    )


LONG_B64 = packed(np.arange(BIG // 10, dtype=np.float64))["data"].encode("ascii")
MID = len(LONG_B64) // 2  # a position in the middle of LONG_B64, at a 4-character boundary
MID -= MID % 4


def big_list(bad: Any, at: int, n: int = BIG) -> list[Any]:
    """``n`` valid numbers with ``bad`` at index ``at``."""
    values: list[Any] = [0.5] * n
    values[at] = bad
    return values


# (id, method, path, headers, raw body, expected status, expected code)
BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    # --- the body is not a JSON object (engine.parse_body: 422 invalid_request) ---
    ("json_syntax_trailing_comma", "POST", MSE, JSON, b'{"predictions": [1], "targets": [1],}',
     422, "invalid_request"),
    ("json_syntax_single_quotes", "POST", MSE, JSON, b"{'predictions': [1], 'targets': [1]}",
     422, "invalid_request"),
    ("json_truncated", "POST", MSE, JSON, b'{"predictions": [1, 2], "targets": [1,', 422,
     "invalid_request"),
    ("json_trailing_garbage", "POST", MSE, JSON, body() + b" x", 422, "invalid_request"),
    ("empty_body", "POST", MSE, JSON, b"", 422, "invalid_request"),
    ("body_is_array", "POST", MSE, JSON, b"[[1, 2], [1, 2]]", 422, "invalid_request"),
    ("body_is_string", "POST", MSE, JSON, b'"predictions"', 422, "invalid_request"),
    ("body_is_number", "POST", MSE, JSON, b"42", 422, "invalid_request"),
    ("body_is_null", "POST", MSE, JSON, b"null", 422, "invalid_request"),
    ("non_utf8_bytes", "POST", MSE, JSON,
     b'{"predictions": [1], "targets": [1], "reduction": "\xff\xfe"}', 422, "invalid_request"),
    # --- non-finite numbers as JSON tokens: orjson refuses them, so a JSON syntax error ---
    ("nan_token", "POST", MSE, JSON, b'{"predictions": [1.0, NaN], "targets": [1.0, 2.0]}', 422,
     "invalid_request"),
    ("infinity_token", "POST", MSE, JSON,
     b'{"predictions": [1.0, 2.0], "targets": [Infinity, 2.0]}', 422, "invalid_request"),
    ("neg_infinity_token", "POST", MSE, JSON,
     b'{"predictions": [-Infinity, 2.0], "targets": [1.0, 2.0]}', 422, "invalid_request"),
    ("overflow_1e400", "POST", MSE, JSON, b'{"predictions": [1e400, 2.0], "targets": [1, 2]}',
     422, "invalid_request"),
    ("deeply_nested_5000", "POST", MSE, JSON,
     b'{"predictions": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b', "targets": [1]}', 422,
     "invalid_request"),
    # --- arrays (service/arrays.py: 422 invalid_array) ---
    ("rank0_number", "POST", MSE, JSON, body(predictions=1.5, targets=1.5), 422, "invalid_array"),
    ("predictions_null", "POST", MSE, JSON, body(predictions=None), 422, "invalid_array"),
    ("targets_null", "POST", MSE, JSON, body(targets=None), 422, "invalid_array"),
    ("predictions_string", "POST", MSE, JSON, body(predictions="1, 2"), 422, "invalid_array"),
    ("rank3", "POST", MSE, JSON, body(predictions=[[[1.0]], [[2.0]]], targets=[[[1.0]], [[2.0]]]),
     422, "invalid_array"),
    ("ragged_rows", "POST", MSE, JSON, body(predictions=[[1, 2], [3]], targets=[[1, 2], [3, 4]]),
     422, "invalid_array"),
    ("ragged_row_not_list", "POST", MSE, JSON, body(predictions=[[1, 2], 3]), 422,
     "invalid_array"),
    ("string_at_index_0", "POST", MSE, JSON, body(predictions=["1", 2]), 422, "invalid_array"),
    ("string_later", "POST", MSE, JSON, body(targets=[1, "2"]), 422, "invalid_array"),
    ("bool_at_index_0", "POST", MSE, JSON, body(predictions=[True, 2]), 422, "invalid_array"),
    ("bool_later", "POST", MSE, JSON, body(targets=[1, False]), 422, "invalid_array"),
    ("bool_in_rank2", "POST", MSE, JSON, body(predictions=[[1, 2], [True, 4]],
     targets=[[1, 2], [3, 4]]), 422, "invalid_array"),
    ("null_at_index_0", "POST", MSE, JSON, body(predictions=[None, 2]), 422, "invalid_array"),
    ("null_later", "POST", MSE, JSON, body(targets=[1, None]), 422, "invalid_array"),
    ("object_in_list", "POST", MSE, JSON, body(predictions=[{"v": 1}, 2]), 422, "invalid_array"),
    ("number_then_list", "POST", MSE, JSON, body(predictions=[1, [2]]), 422, "invalid_array"),
    ("list_then_number", "POST", MSE, JSON, body(predictions=[[1], 2]), 422, "invalid_array"),
    ("zero_width_rows", "POST", MSE, JSON, body(predictions=[[]], targets=[[]]), 422,
     "invalid_array"),
    ("long_list_string_at_end", "POST", MSE, JSON,
     body(predictions=big_list("x", BIG - 1), targets=[0.5] * BIG), 422, "invalid_array"),
    ("long_list_null_in_middle", "POST", MSE, JSON,
     body(predictions=[0.5] * BIG, targets=big_list(None, BIG // 2)), 422, "invalid_array"),
    ("long_rank2_ragged_at_end", "POST", MSE, JSON,
     body(predictions=[*[[0.5, 0.5]] * (BIG - 1), [0.5]], targets=[[0.5, 0.5]] * BIG), 422,
     "invalid_array"),
    ("long_list_nan_token_at_end", "POST", MSE, JSON,
     b'{"predictions": [' + b"0.5, " * BIG + b'NaN], "targets": [1]}', 422, "invalid_request"),
    # --- required fields and shapes (engine.decode_batch, engine.check_shapes) ---
    ("missing_predictions", "POST", MSE, JSON, body(predictions=DROP), 422, "invalid_request"),
    ("missing_targets", "POST", MSE, JSON, body(targets=DROP), 422, "invalid_request"),
    ("targets_longer", "POST", MSE, JSON, body(targets=[1.0, 2.0, 3.0]), 422, "shape_mismatch"),
    ("targets_rank2_vs_rank1", "POST", MSE, JSON, body(targets=[[1.0], [2.0]]), 422,
     "shape_mismatch"),
    ("sample_weight_wrong_length", "POST", MSE, JSON, body(sample_weight=[1.0, 1.0, 1.0]), 422,
     "shape_mismatch"),
    ("sample_weight_rank2", "POST", MSE, JSON, body(sample_weight=[[1.0], [1.0]]), 422,
     "shape_mismatch"),
    ("sample_weight_negative", "POST", MSE, JSON, body(sample_weight=[1.0, -0.5]), 422,
     "invalid_array"),
    ("long_sample_weight_negative_at_end", "POST", MSE, JSON,
     body(predictions=[0.5] * BIG, targets=[0.5] * BIG, sample_weight=big_list(-1.0, BIG - 1)),
     422, "invalid_array"),
    ("sample_weight_nan_token", "POST", MSE, JSON,
     b'{"predictions": [1, 2], "targets": [1, 2], "sample_weight": [1, NaN]}', 422,
     "invalid_request"),
    ("sample_weight_packed_inf", "POST", MSE, JSON,
     body(sample_weight=packed([1.0, np.inf])), 422, "invalid_array"),
    ("sample_weight_bool", "POST", MSE, JSON, body(sample_weight=True), 422, "invalid_array"),
    # --- the other top-level fields (schemas.LossOptions: strict, extra="forbid") ---
    ("unknown_top_level_field", "POST", MSE, JSON, body(weights=[1, 1]), 422, "invalid_request"),
    ("unknown_top_level_field_long_name", "POST", MSE, JSON, body(**{"w" * 10_000: 1}), 422,
     "invalid_request"),
    ("reduction_unknown", "POST", MSE, JSON, body(reduction="avg"), 422, "invalid_request"),
    ("reduction_number", "POST", MSE, JSON, body(reduction=1), 422, "invalid_request"),
    ("dtype_float16", "POST", MSE, JSON, body(dtype="float16"), 422, "invalid_request"),
    ("dtype_null", "POST", MSE, JSON, body(dtype=None), 422, "invalid_request"),
    ("array_format_csv", "POST", MSE, JSON, body(array_format="csv"), 422, "invalid_request"),
    ("per_sample_yes", "POST", MSE, JSON, body(per_sample="yes"), 422, "invalid_request"),
    ("gradient_1", "POST", MSE, JSON, body(gradient=1), 422, "invalid_request"),
    ("hessian_null", "POST", MSE, JSON, body(hessian=None), 422, "invalid_request"),
    ("params_list", "POST", MSE, JSON, body(params=[1.0]), 422, "invalid_request"),
    ("params_string", "POST", "/loss/huber", JSON, body(params="delta=1"), 422,
     "invalid_request"),
    # --- loss parameters (each loss's LossParams: 422 invalid_params) ---
    ("unknown_param", "POST", MSE, JSON, body(params={"delta": 1.0}), 422, "invalid_params"),
    ("unknown_param_long_name", "POST", "/loss/huber", JSON, body(params={"d" * 60_000: 1.0}),
     422, "invalid_params"),
    ("unknown_param_longer_name", "POST", "/loss/huber", JSON, body(params={"d" * BIG: 1.0}),
     422, "invalid_params"),
    ("huber_delta_0", "POST", "/loss/huber", JSON, body(params={"delta": 0}), 422,
     "invalid_params"),
    ("pinball_quantile_1", "POST", "/loss/pinball", JSON, body(params={"quantile": 1}), 422,
     "invalid_params"),
    ("tweedie_power_half", "POST", "/loss/tweedie", JSON, body(params={"power": 0.5}), 422,
     "invalid_params"),
    ("smooth_l1_beta_negative", "POST", "/loss/smooth_l1", JSON, body(params={"beta": -1}), 422,
     "invalid_params"),
    ("bool_as_float_param", "POST", "/loss/huber", JSON, body(params={"delta": True}), 422,
     "invalid_params"),
    ("string_as_float_param", "POST", "/loss/huber", JSON, body(params={"delta": "1.0"}), 422,
     "invalid_params"),
    ("int_as_bool_param", "POST", "/loss/poisson", JSON, body(params={"full": 1}), 422,
     "invalid_params"),
    # --- packed arrays (arrays._decode_packed) ---
    ("packed_bad_base64", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], data="!!no==")),
     422, "invalid_array"),
    ("packed_truncated_data", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], data=base64.b64encode(b"\0" * 12).decode())), 422,
     "invalid_array"),
    ("packed_unknown_dtype", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], dtype="uint8")), 422, "invalid_array"),
    ("packed_dtype_not_string", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], dtype=8)),
     422, "invalid_array"),
    ("packed_negative_shape", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], shape=[-2])),
     422, "invalid_array"),
    ("packed_shape_rank3", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], shape=[2, 1, 1])), 422, "shape_mismatch"),
    ("packed_shape_rank0", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], shape=[])), 422,
     "invalid_array"),
    ("packed_shape_bool", "POST", MSE, JSON, body(predictions=packed([1.0], shape=[True])), 422,
     "invalid_array"),
    ("packed_shape_zero_width", "POST", MSE, JSON,
     body(predictions=packed([], shape=[2, 0]), targets=packed([], shape=[2, 0])), 422,
     "invalid_array"),
    ("packed_missing_data", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], data=DROP)),
     422, "invalid_array"),
    ("packed_extra_key", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], order="C")), 422, "invalid_array"),
    ("packed_data_not_string", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], data=[1, 2])),
     422, "invalid_array"),
    ("packed_invalid_json_escape", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0])).replace(b'"data":"', b'"data":"\\x'), 422,
     "invalid_request"),
    # --- long packed data (over 64 KiB: decoded by service/body.py, not by orjson) ---
    ("packed_long_bad_base64", "POST", MSE, JSON,
     long_packed(LONG_B64[:MID] + b"!!!!" + LONG_B64[MID + 4 :]), 422, "invalid_array"),
    ("packed_long_truncated", "POST", MSE, JSON, long_packed(LONG_B64[:-12]), 422,
     "invalid_array"),
    ("packed_long_nan", "POST", MSE, JSON,
     long_packed(packed(np.r_[np.zeros(BIG // 10 - 1), np.nan])["data"].encode()), 422,
     "invalid_array"),
    # JSON allows no "\x" escape and no lone surrogate: a JSON syntax error, as in a short body
    ("packed_long_invalid_json_escape", "POST", MSE, JSON,
     long_packed(LONG_B64[:MID] + b"\\x" + LONG_B64[MID + 2 :]), 422, "invalid_request"),
    ("packed_long_lone_surrogate_escape", "POST", MSE, JSON,
     long_packed(LONG_B64[:MID] + b"\\ud800" + LONG_B64[MID + 1 :]), 422, "invalid_request"),
    ("long_string_as_reduction", "POST", MSE, JSON, body(reduction="x" * BIG), 422,
     "invalid_request"),
    # 2**80 elements: more than LOSSD_MAX_ELEMENTS, and more than int64 can count
    ("packed_shape_product_overflows_int64", "POST", MSE, JSON,
     body(predictions=packed([], shape=[2**40, 2**40])), 413, "too_many_elements"),
    ("packed_nan", "POST", MSE, JSON, body(predictions=packed([1.0, np.nan])), 422,
     "invalid_array"),
    ("packed_inf_float32", "POST", MSE, JSON, body(targets=packed([np.inf, 2.0], "float32")), 422,
     "invalid_array"),
    # engine._as_compute: 1e39 is finite in float64 but not in float32
    ("float32_overflow", "POST", MSE, JSON, body(predictions=[1e39, 2.0], dtype="float32"), 422,
     "invalid_array"),
    # --- the loss's domain and the result (check_domain, engine.compute) ---
    ("tweedie_power2_zero_prediction", "POST", "/loss/tweedie", JSON,
     body(predictions=[0.0, 2.0], params={"power": 2}), 422, "out_of_domain"),
    ("poisson_negative_target", "POST", "/loss/poisson", JSON, body(targets=[-1.0, 2.0]), 422,
     "out_of_domain"),
    # (1e200 - -1e200)**2 overflows float64
    ("mse_result_overflows", "POST", MSE, JSON, body(predictions=[1e200], targets=[-1e200]), 422,
     "out_of_domain"),
    ("cosine_similarity_rank1", "POST", "/loss/cosine_similarity", JSON, body(), 422,
     "shape_mismatch"),
    # --- media type (api/_body.read_json_body: 415) ---
    ("content_type_text_plain", "POST", MSE, {"content-type": "text/plain"}, body(), 415,
     "unsupported_media_type"),
    ("content_type_missing", "POST", MSE, {}, body(), 415, "unsupported_media_type"),
    ("content_type_form", "POST", MSE, {"content-type": "application/x-www-form-urlencoded"},
     b"predictions=1&targets=1", 415, "unsupported_media_type"),
    # --- routes ---
    ("get_on_loss", "GET", MSE, {}, b"", 405, "method_not_allowed"),
    ("delete_losses", "DELETE", "/losses", {}, b"", 405, "method_not_allowed"),
    ("unknown_route", "GET", "/no/such/route", {}, b"", 404, "not_found"),
    ("unknown_loss", "POST", "/loss/hubr", JSON, body(), 404, "unknown_loss"),
    ("unknown_loss_get", "GET", "/losses/no_such_loss", {}, b"", 404, "unknown_loss"),
    ("unknown_loss_long_name", "POST", "/loss/" + "x" * 3000, JSON, body(), 404, "unknown_loss"),
    ("unknown_loss_non_utf8_name", "POST", "/loss/%FF%FE", JSON, body(), 404, "unknown_loss"),
    ("unknown_loss_path_traversal", "POST", "/loss/..%2F..%2Fetc%2Fpasswd", JSON, body(), 404,
     "not_found"),
    ("unknown_loss_nul_in_name", "POST", "/loss/mse%00", JSON, body(), 404, "unknown_loss"),
    ("unknown_loss_homoglyph_name", "POST", "/loss/m%C5%9Fe", JSON, body(), 404, "unknown_loss"),
    ("put_on_loss", "PUT", MSE, JSON, body(), 405, "method_not_allowed"),
    ("patch_on_loss", "PATCH", MSE, JSON, body(), 405, "method_not_allowed"),
    # --- deep nesting: orjson stops at depth 1024, numpy at rank 64, the decoder at rank 2 ---
    ("deeply_nested_params_objects", "POST", "/loss/huber", JSON,
     b'{"predictions": [1], "targets": [1], "params": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000
     + b"}", 422, "invalid_request"),
    ("deeply_nested_body_100k", "POST", MSE, JSON, b"[" * 100_000 + b"]" * 100_000, 422,
     "invalid_request"),
    ("deeply_nested_500_rank", "POST", MSE, JSON,
     b'{"predictions": ' + b"[" * 500 + b"1" + b"]" * 500 + b', "targets": [1]}', 422,
     "invalid_array"),
    ("deeply_nested_losses", "POST", "/loss", JSON,
     b'{"predictions": [1], "targets": [1], "losses": ' + b"[" * 2000 + b"]" * 2000 + b"}", 422,
     "invalid_request"),
    ("nested_sample_weight_rank3", "POST", MSE, JSON, body(sample_weight=[[[1.0]], [[1.0]]]),
     422, "invalid_array"),
    # --- huge exponents and integers: orjson refuses what overflows float64 ---
    ("exponent_20_digits", "POST", MSE, JSON,
     b'{"predictions": [1e99999999999999999999, 2], "targets": [1, 2]}', 422, "invalid_request"),
    ("exponent_negative_overflow", "POST", MSE, JSON,
     b'{"predictions": [1, 2], "targets": [-1e400, 2]}', 422, "invalid_request"),
    ("exponent_in_params", "POST", "/loss/huber", JSON,
     b'{"predictions": [1, 2], "targets": [1, 2], "params": {"delta": 1e999}}', 422,
     "invalid_request"),
    ("integer_400_digits_in_params", "POST", "/loss/huber", JSON,
     b'{"predictions": [1], "targets": [1], "params": {"delta": ' + b"9" * 400 + b"}}", 422,
     "invalid_request"),
    ("integer_5000_digits_in_array", "POST", MSE, JSON,
     b'{"predictions": [' + b"9" * 5000 + b', 2], "targets": [1, 2]}', 422, "invalid_request"),
    ("exponent_as_shape", "POST", MSE, JSON,
     b'{"predictions": {"dtype": "float64", "shape": [1e30], "data": ""}, "targets": [1]}', 422,
     "invalid_array"),
    # finite weights whose sum is not: weight_sum would be null (engine.compute)
    ("sample_weights_sum_overflows", "POST", MSE, JSON,
     body(predictions=[1.0, 3.0], sample_weight=[1e308, 1e308], reduction="sum"), 422,
     "out_of_domain"),
    ("gradient_overflows", "POST", MSE, JSON,
     body(predictions=[1e308, -1e308], targets=[-1e308, 1e308], gradient=True), 422,
     "out_of_domain"),
    # --- duplicated keys: the last one wins, as in Python's json and JavaScript's JSON.parse ---
    ("duplicate_key_last_is_bad", "POST", MSE, JSON,
     b'{"predictions": [1, 2], "targets": [1, 2], "predictions": "x"}', 422, "invalid_array"),
    ("duplicate_reduction_last_is_bad", "POST", MSE, JSON,
     b'{"predictions": [1, 2], "targets": [1, 2], "reduction": "mean", "reduction": "avg"}', 422,
     "invalid_request"),
    ("duplicate_packed_dtype_last_is_bad", "POST", MSE, JSON,
     b'{"predictions": {"dtype": "float64", "shape": [2], "data": "'
     + packed([1.0, 2.0])["data"].encode() + b'", "dtype": "uint8"}, "targets": [1, 2]}', 422,
     "invalid_array"),
    ("duplicate_param_last_is_bad", "POST", "/loss/huber", JSON,
     b'{"predictions": [1, 2], "targets": [1, 2], "params": {"delta": 1.0, "delta": 0}}', 422,
     "invalid_params"),
    # --- bytes that are not UTF-8 JSON ---
    ("non_utf8_in_key", "POST", MSE, JSON, b'{"pred\xffictions": [1], "targets": [1]}', 422,
     "invalid_request"),
    ("non_utf8_in_short_packed_data", "POST", MSE, JSON,
     b'{"predictions": {"dtype": "float64", "shape": [1], "data": "AAAAAAA\xff"}, '
     b'"targets": [1]}', 422, "invalid_request"),
    # a long literal is cut out before orjson sees it: the base64 check refuses the bytes
    ("non_utf8_in_long_packed_data", "POST", MSE, JSON,
     long_packed(LONG_B64[:MID] + b"\xff\xfe\xfd\xfc" + LONG_B64[MID + 4 :]), 422,
     "invalid_array"),
    ("non_utf8_long_string", "POST", MSE, JSON,
     body(reduction="x").replace(b'"x"', b'"' + b"\xff" * 70_000 + b'"'), 422,
     "invalid_request"),
    ("utf16_body", "POST", MSE, {"content-type": "application/json; charset=utf-16"},
     body().decode().encode("utf-16"), 422, "invalid_request"),
    ("utf8_byte_order_mark", "POST", MSE, JSON, b"\xef\xbb\xbf" + body(), 422,
     "invalid_request"),
    ("latin1_string", "POST", MSE, JSON,
     b'{"predictions": [1], "targets": [1], "reduction": "m\xe9an"}', 422, "invalid_request"),
    ("overlong_utf8", "POST", MSE, JSON,
     b'{"predictions": [1], "targets": [1], "reduction": "\xc0\xaf"}', 422, "invalid_request"),
    ("nul_byte_between_tokens", "POST", MSE, JSON, b'{"predictions": [1],\x00 "targets": [1]}',
     422, "invalid_request"),
    ("lone_surrogate_escape_short", "POST", MSE, JSON,
     b'{"predictions": [1], "targets": [1], "reduction": "\\ud800"}', 422, "invalid_request"),
    # --- other JSON that is not JSON ---
    ("json_comment", "POST", MSE, JSON, b'{"predictions": [1], // c\n "targets": [1]}', 422,
     "invalid_request"),
    ("number_leading_zero", "POST", MSE, JSON, b'{"predictions": [01], "targets": [1]}', 422,
     "invalid_request"),
    ("number_hex", "POST", MSE, JSON, b'{"predictions": [0x10], "targets": [1]}', 422,
     "invalid_request"),
    ("number_plus_sign", "POST", MSE, JSON, b'{"predictions": [+1], "targets": [1]}', 422,
     "invalid_request"),
    ("number_no_leading_digit", "POST", MSE, JSON, b'{"predictions": [.5], "targets": [1]}', 422,
     "invalid_request"),
    # --- more content types (api/_body.py: JSON or +json only) ---
    ("content_type_xml", "POST", MSE, {"content-type": "application/xml"}, body(), 415,
     "unsupported_media_type"),
    ("content_type_msgpack", "POST", MSE, {"content-type": "application/x-msgpack"}, body(), 415,
     "unsupported_media_type"),
    # binary bodies (issue 13): a JSON document sent as one is malformed, not of the wrong type
    ("content_type_octet_stream", "POST", MSE, {"content-type": "application/octet-stream"},
     body(), 422, "invalid_request"),
    ("content_type_multipart", "POST", MSE,
     {"content-type": "multipart/form-data; boundary=x"}, body(), 422, "invalid_request"),
    ("content_type_text_json", "POST", MSE, {"content-type": "text/json"}, body(), 415,
     "unsupported_media_type"),
    ("content_type_json_seq", "POST", MSE, {"content-type": "application/json-seq"}, body(), 415,
     "unsupported_media_type"),
    ("content_type_jsonx", "POST", MSE, {"content-type": "application/jsonx"}, body(), 415,
     "unsupported_media_type"),
    ("content_type_parameters_only", "POST", MSE, {"content-type": "; charset=utf-8"}, body(),
     415, "unsupported_media_type"),
    ("content_type_on_multi_loss", "POST", "/loss", {"content-type": "text/html"},
     body(losses=[{"name": "mse"}]), 415, "unsupported_media_type"),
    # --- truncated or padded packed data ---
    ("packed_data_length_not_multiple_of_4", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], data=packed([1.0, 2.0])["data"][:-1])), 422,
     "invalid_array"),
    ("packed_data_padding_stripped", "POST", MSE, JSON,
     body(predictions=packed([1, 2, 3], "int32", data=packed([1, 2, 3], "int32")["data"][:-2]),
          targets=[1, 2, 3]), 422, "invalid_array"),
    ("packed_data_longer_than_shape", "POST", MSE, JSON,
     body(predictions=packed([1.0, 2.0], data=base64.b64encode(b"\0" * 24).decode())), 422,
     "invalid_array"),
    ("packed_int32_odd_byte_count", "POST", MSE, JSON,
     body(predictions=packed([1, 2], "int32", data=base64.b64encode(b"\0" * 7).decode())), 422,
     "invalid_array"),
    ("body_cut_inside_packed_data", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0]))[:40],
     422, "invalid_request"),
    ("long_body_cut_inside_packed_data", "POST", MSE, JSON, long_packed(LONG_B64)[: 100 + MID],
     422, "invalid_request"),
    # --- shapes whose element count overflows 64 bits, or that numpy cannot describe ---
    ("packed_shape_2^63-1_by_2", "POST", MSE, JSON, body(predictions=packed([], shape=[2**63 - 1, 2])),
     413, "too_many_elements"),
    ("packed_shape_product_wraps_to_0_int64", "POST", MSE, JSON,
     body(predictions=packed([], shape=[2**62, 4])), 413, "too_many_elements"),
    ("packed_shape_product_wraps_to_0_uint64", "POST", MSE, JSON,
     body(predictions=packed([], shape=[2**32, 2**32])), 413, "too_many_elements"),
    # no element at all, but rows wider than any array numpy can make (arrays._decode_packed)
    ("packed_shape_0_by_2^62", "POST", MSE, JSON,
     body(predictions=packed([], shape=[0, 2**62]), targets=packed([], shape=[0, 2**62])), 413,
     "too_many_elements"),
    ("packed_shape_0_by_2^63-1", "POST", "/loss/cross_entropy", JSON,
     body(predictions=packed([], shape=[0, 2**63 - 1]), targets=packed([], "int64")), 413,
     "too_many_elements"),
    # orjson reads an integer past uint64 as a float: not a shape
    ("packed_shape_2^64", "POST", MSE, JSON,
     b'{"predictions": {"dtype": "float64", "shape": [18446744073709551616], "data": ""}, '
     b'"targets": [1]}', 422, "invalid_array"),
    ("packed_shape_string", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], shape=["2"])),
     422, "invalid_array"),
    ("packed_shape_null", "POST", MSE, JSON, body(predictions=packed([1.0, 2.0], shape=None)),
     422, "invalid_array"),
    # --- POST /loss ---
    ("losses_65", "POST", "/loss", JSON, body(losses=[{"name": "mse"}] * 65), 422,
     "invalid_request"),
    ("losses_empty", "POST", "/loss", JSON, body(losses=[]), 422, "invalid_request"),
    ("losses_missing", "POST", "/loss", JSON, body(), 422, "invalid_request"),
    ("losses_not_a_list", "POST", "/loss", JSON, body(losses={"name": "mse"}), 422,
     "invalid_request"),
    ("losses_name_number", "POST", "/loss", JSON, body(losses=[{"name": 1}]), 422,
     "invalid_request"),
    ("losses_second_unknown", "POST", "/loss", JSON,
     body(losses=[{"name": "mse"}, {"name": "nope"}]), 404, "unknown_loss"),
    ("losses_empty_name", "POST", "/loss", JSON, body(losses=[{"name": ""}]), 404,
     "unknown_loss"),
    ("losses_name_100k_chars", "POST", "/loss", JSON, body(losses=[{"name": "x" * BIG}]), 404,
     "unknown_loss"),
    # --- options and parameters, spelt almost right ---
    ("dtype_trailing_space", "POST", MSE, JSON, body(dtype="float64 "), 422, "invalid_request"),
    ("reduction_upper_case", "POST", MSE, JSON, body(reduction="MEAN"), 422, "invalid_request"),
    ("reduction_fullwidth_letter", "POST", MSE, JSON, body(reduction="ｍean"), 422,
     "invalid_request"),
    ("hessian_string_true", "POST", MSE, JSON, body(hessian="true"), 422, "invalid_request"),
    ("params_null", "POST", MSE, JSON, body(params=None), 422, "invalid_request"),
    # 10 000 errors: the answer names the first few (engine._invalid), it does not list them all
    ("params_10k_unknown_keys", "POST", "/loss/huber", JSON,
     body(params={f"k{i}": i for i in range(10_000)}), 422, "invalid_params"),
    ("class_weight_wrong_length", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[1], params={"class_weight": [1.0, 2.0, 3.0]}), 422,
     "invalid_params"),
    ("ignore_index_bool", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[1], params={"ignore_index": True}), 422,
     "invalid_params"),
    # --- class-index targets (losses/_multiclass.one_hot) ---
    ("class_index_out_of_range", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[2]), 422, "invalid_array"),
    ("class_index_negative", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[-1]), 422, "invalid_array"),
    ("class_index_fractional", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[0.5]), 422, "invalid_array"),
    # past int64: checked before the cast, which has no int64 to give
    ("class_index_2^63", "POST", "/loss/cross_entropy", JSON,
     b'{"predictions": [[0.5, 0.5]], "targets": [9223372036854775808]}', 422, "invalid_array"),
    ("class_index_1e300", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[0.5, 0.5]], targets=[1e300]), 422, "invalid_array"),
    ("probabilities_outside_0_1", "POST", "/loss/cross_entropy", JSON,
     body(predictions=[[1.5, -0.5]], targets=[1]), 422, "out_of_domain"),
    ("binary_label_2", "POST", "/loss/binary_cross_entropy", JSON,
     body(predictions=[0.5, 0.5], targets=[2.0, 0.0]), 422, "invalid_array"),
    ("sample_weight_packed_int64_negative", "POST", MSE, JSON,
     body(sample_weight=packed([1, -1], "int64")), 422, "invalid_array"),
    ("sample_weight_string", "POST", MSE, JSON, body(sample_weight="1,1"), 422, "invalid_array"),
]  # fmt: skip


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``response`` is a short, traceback-free problem+json document with this status and code."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.json()
    assert doc["type"] == "about:blank"  # SPEC section 5
    assert isinstance(doc["title"], str) and doc["title"]
    assert doc["status"] == status
    assert isinstance(doc["detail"], str) and doc["detail"]
    assert doc["code"] == code
    text = response.text
    assert "Traceback" not in text
    assert 'File "' not in text
    assert "/work/" not in text
    assert "\\u0000" not in text  # no control characters (or internal markers) in the document
    assert len(response.content) < MAX_ERROR_BYTES, f"{len(response.content)} bytes"
    return doc
