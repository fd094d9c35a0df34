"""SECP160R1 point arithmetic for decrypting crowd-sourced reports, kept lean for throughput.

A crowd-sourced report costs two scalar multiplications: R = r·G (the tracker's rotating key;
shared by the reports of one 1024-second window, but reports spread over hours rarely share
one) and r·S by the finder's point S, new every time. `ecdsa`'s generic multiplications take
about 0.33 ms (r·G) and 0.9 ms (r·S) on the target machines: together they would cap decryption
below the 900 reports per second SPEC.md asks for. So this module does both itself, in Jacobian
coordinates with mixed additions of affine table points:

- r·S: the a = -3 doubling, a width-5 NAF of r (computed once per window) and a table of odd
  multiples of S normalised to affine with a single inversion;
- r·G: a fixed-base table (every j·2^(6i)·G, |j| ≤ 32), built once per process on first use
  (a few milliseconds), so a product is about 27 additions and no doubling.

`ecdsa` supplies the curve constants, and the tests compare every product with it. Only x
coordinates leave this module: the bridge never needs y.
"""

from __future__ import annotations

from ecdsa.curves import SECP160r1

_CURVE = SECP160r1.curve
P: int = _CURVE.p()
A: int = _CURVE.a() % P
B: int = _CURVE.b()
N: int = SECP160r1.order
COORDINATE_BYTES = 20
_G = (SECP160r1.generator.x(), SECP160r1.generator.y())

# The doubling below relies on a = -3 and the square root on p ≡ 3 (mod 4).
assert A == P - 3
assert P % 4 == 3

WINDOW = 5
_WINDOW_MODULUS = 1 << WINDOW
_BASE_WINDOW = 6
_BASE_HALF = 1 << (_BASE_WINDOW - 1)
_BASE_ROWS = (N.bit_length() + _BASE_WINDOW) // _BASE_WINDOW
_SQRT_EXPONENT = (P + 1) // 4

Affine = tuple[int, int]
Jacobian = tuple[int, int, int]  # Z = 0 is the point at infinity

_base_table: list[list[Affine]] = []


class NotOnCurve(ValueError):
    """An x coordinate with no point on the curve (a corrupt or forged report)."""


def lift_x(x: int) -> Affine:
    """The affine point with abscissa x (either of the two; they give the same x(k·S))."""
    if not 0 <= x < P:
        raise NotOnCurve("x coordinate out of range")
    rhs = (x * x * x - 3 * x + B) % P
    y = pow(rhs, _SQRT_EXPONENT, P)
    if y * y % P != rhs:
        raise NotOnCurve("x coordinate has no point on SECP160R1")
    return x, y


def naf_digits(k: int) -> tuple[int, ...]:
    """The width-5 NAF of k > 0, most significant digit first; digits are 0 or odd in (-16, 16)."""
    digits: list[int] = []
    while k:
        # Runs of zero digits are taken whole: a bit at a time costs more than the product.
        zeros = (k & -k).bit_length() - 1
        if zeros:
            digits.extend([0] * zeros)
            k >>= zeros
        digit = k & (_WINDOW_MODULUS - 1)
        if digit >= _WINDOW_MODULUS // 2:
            digit -= _WINDOW_MODULUS
        digits.append(digit)
        k = (k - digit) >> 1
    digits.reverse()
    return tuple(digits)


def multiply_x(digits: tuple[int, ...], x: int, y: int) -> int:
    """x of k·S, for k given by `naf_digits(k)` with 0 < k < n and S = (x, y) on the curve."""
    p = P
    table: dict[int, Affine] = {}
    for index, (tx, ty) in enumerate(_odd_multiples(x, y)):
        table[2 * index + 1] = (tx, ty)
        table[-(2 * index + 1)] = (tx, p - ty)
    # The leading digit is non-zero: start from its point rather than from infinity.
    qx, qy = table[digits[0]]
    qz = 1
    for digit in digits[1:]:
        # Doubling, a = -3 ("dbl-2001-b"); beta is 4·X·Y².
        delta = qz * qz % p
        gamma = qy * qy % p
        beta = (qx * gamma << 2) % p
        alpha = 3 * (qx - delta) * (qx + delta) % p
        qz = (qy * qz << 1) % p
        qx = (alpha * alpha - (beta << 1)) % p
        qy = (alpha * (beta - qx) - (gamma * gamma << 3)) % p
        if digit:
            tx, ty = table[digit]
            zz = qz * qz % p
            h = (tx * zz - qx) % p
            rr = (ty * zz * qz - qy) % p
            if not h or not qz:
                # Only for scalars within 16 of n (or after such a step); never in practice.
                qx, qy, qz = _add_affine((qx, qy, qz), (tx, ty))
                continue
            # Mixed addition ("madd").
            hh = h * h % p
            hhh = h * hh % p
            v = qx * hh % p
            qx = (rr * rr - hhh - 2 * v) % p
            qy = (rr * (v - qx) - qy * hhh) % p
            qz = qz * h % p
    return _affine_x(qx, qz)


def generator_multiple_x(k: int) -> int:
    """x of k·G for 0 < k < n, by the fixed-base table."""
    if not _base_table:
        _build_base_table()
    p = P
    qx = qy = qz = 0
    row = 0
    while k:
        digit = k & (2 * _BASE_HALF - 1)
        if digit > _BASE_HALF:
            digit -= 2 * _BASE_HALF
        k = (k - digit) >> _BASE_WINDOW
        if digit:
            tx, ty = _base_table[row][abs(digit) - 1]
            if digit < 0:
                ty = p - ty
            if not qz:
                qx, qy, qz = tx, ty, 1
            else:
                zz = qz * qz % p
                h = (tx * zz - qx) % p
                rr = (ty * zz * qz - qy) % p
                if not h:
                    qx, qy, qz = _add_affine((qx, qy, qz), (tx, ty))
                else:
                    hh = h * h % p
                    hhh = h * hh % p
                    v = qx * hh % p
                    qx = (rr * rr - hhh - 2 * v) % p
                    qy = (rr * (v - qx) - qy * hhh) % p
                    qz = qz * h % p
        row += 1
    return _affine_x(qx, qz)


def _affine_x(x: int, z: int) -> int:
    if not z:
        raise ValueError("scalar multiple is the point at infinity")
    z_inverse = pow(z, -1, P)
    return x * z_inverse * z_inverse % P


def _double(point: Jacobian) -> Jacobian:
    x, y, z = point
    p = P
    if not z or not y:
        return (0, 1, 0)
    delta = z * z % p
    gamma = y * y % p
    beta = 4 * x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    nx = (alpha * alpha - 2 * beta) % p
    return nx, (alpha * (beta - nx) - 8 * gamma * gamma) % p, 2 * y * z % p


def _add_affine(point: Jacobian, other: Affine) -> Jacobian:
    """point + other, for every case: infinity, doubling, opposite points."""
    x, y, z = point
    tx, ty = other
    p = P
    if not z:
        return tx, ty, 1
    zz = z * z % p
    h = (tx * zz - x) % p
    rr = (ty * zz * z - y) % p
    if not h:
        return _double(point) if not rr else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = x * hh % p
    nx = (rr * rr - hhh - 2 * v) % p
    return nx, (rr * (v - nx) - y * hhh) % p, z * h % p


def _to_affine(points: list[Jacobian]) -> list[Affine]:
    """Normalise finite points with one inversion (Montgomery's trick)."""
    p = P
    prefix = [1]
    for _, _, z in points:
        prefix.append(prefix[-1] * z % p)
    inverse = pow(prefix[-1], -1, p)
    affine: list[Affine] = [(0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        z_inverse = inverse * prefix[i] % p
        inverse = inverse * z % p
        zi2 = z_inverse * z_inverse % p
        affine[i] = (x * zi2 % p, y * zi2 * z_inverse % p)
    return affine


def _multiples(base: Affine, count: int) -> list[Affine]:
    """1·base, 2·base, ..., count·base (base of prime order n > count)."""
    points: list[Jacobian] = [(*base, 1), _double((*base, 1))]
    while len(points) < count:
        points.append(_add_affine(points[-1], base))
    return _to_affine(points[:count])


def _odd_multiples(x: int, y: int) -> list[Affine]:
    """1·S, 3·S, ..., 15·S in affine: 2S normalised first so the table needs only mixed adds."""
    (twice,) = _to_affine([_double((x, y, 1))])
    points: list[Jacobian] = [(x, y, 1)]
    for _ in range(_WINDOW_MODULUS // 4 - 1):
        points.append(_add_affine(points[-1], twice))
    return _to_affine(points)


def _build_base_table() -> None:
    rows: list[list[Affine]] = []
    base = _G
    for _ in range(_BASE_ROWS):
        row = _multiples(base, _BASE_HALF)
        rows.append(row)
        # The next row's base: 2^6 · base = 2 · (32 · base).
        (base,) = _to_affine([_double((*row[-1], 1))])
    _base_table[:] = rows
