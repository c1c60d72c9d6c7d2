"""Price models, proration and discount allocation on plain values, with exact Decimal amounts."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import round_amount
from subscriptions.pricing import DiscountRule, Tier, allocate_discounts, full_amount, price_parts, prorate

TIERS = [
    Tier(1000, Decimal("0.0100"), Decimal(0)),
    Tier(5000, Decimal("0.0080"), Decimal(0)),
    Tier(None, Decimal("0.0050"), Decimal(0)),
]


def _total(model, quantity, **kwargs):
    parts = price_parts(
        pricing_model=model, unit_amount=kwargs.pop("unit", Decimal(0)), quantity=Decimal(quantity), **kwargs
    )
    return sum((round_amount(p.amount, "EUR") for p in parts), Decimal(0)), parts


@pytest.mark.parametrize(
    ("quantity", "graduated", "volume", "package"),
    [
        (0, "0", "0", "0"),
        (1000, "10.00", "10.00", "10.00"),
        (1500, "14.00", "12.00", "20.00"),
        (6000, "47.00", "30.00", "60.00"),
    ],
)
def test_graduated_vs_volume_vs_package_on_the_same_quantities(quantity, graduated, volume, package):
    assert _total("graduated", quantity, tiers=TIERS)[0] == Decimal(graduated)
    assert _total("volume", quantity, tiers=TIERS)[0] == Decimal(volume)
    assert _total("package", quantity, unit=Decimal("10.00"), package_size=1000)[0] == Decimal(package)


def test_graduated_parts_name_their_tiers_and_flat_amounts():
    tiers = [Tier(10, Decimal("2"), Decimal("5")), Tier(None, Decimal("1"), Decimal("3"))]
    total, parts = _total("graduated", 12, tiers=tiers)
    assert total == Decimal("30.00")  # 10 × 2 + 5 + 2 × 1 + 3
    assert [p.label for p in parts] == ["tier 1 (1–10)", "tier 1 flat fee", "tier 2 (11 and above)", "tier 2 flat fee"]


def test_volume_flat_amount_of_the_tier_reached():
    tiers = [Tier(10, Decimal("2"), Decimal("5")), Tier(None, Decimal("1"), Decimal("3"))]
    assert _total("volume", 12, tiers=tiers)[0] == Decimal("15.00")  # 12 × 1 + 3


def test_flat_fee_ignores_quantity_and_per_unit_multiplies():
    assert _total("flat", 7, unit=Decimal("49.00"))[0] == Decimal("49.00")
    assert _total("per_unit", 3, unit=Decimal("3.335"))[0] == Decimal("10.01")  # 10.005 rounds half up


def test_tiered_price_needs_an_open_ended_last_tier():
    with pytest.raises(ValueError, match="open-ended"):
        price_parts(
            pricing_model="graduated",
            unit_amount=Decimal(0),
            quantity=Decimal(1),
            tiers=[Tier(5, Decimal(1), Decimal(0))],
        )


def test_proration_fraction_counts_the_change_day_as_remaining():
    assert round_amount(prorate(Decimal("149.95"), 18, 31), "EUR") == Decimal("87.07")
    with pytest.raises(ValueError):
        prorate(Decimal(1), 32, 31)


def _rule(pk, percent=None, amount=None, products=()):
    return DiscountRule(
        pk,
        None if percent is None else Decimal(percent),
        None if amount is None else Decimal(amount),
        frozenset(products),
    )


def test_several_discounts_apply_in_order_on_what_is_left_never_below_zero():
    taken, applied = allocate_discounts(
        amounts=[Decimal("100.00"), Decimal("50.00")],
        product_ids=[1, 2],
        eligible=[True, True],
        rules=[_rule(1, percent="10"), _rule(2, amount="200")],
        currency="EUR",
    )
    assert taken == [Decimal("100.00"), Decimal("50.00")]
    assert applied == [1, 2]


def test_amount_discount_is_spread_by_largest_remainder_and_respects_products():
    taken, _ = allocate_discounts(
        amounts=[Decimal("10.00"), Decimal("10.00"), Decimal("10.00"), Decimal("99.00")],
        product_ids=[1, 1, 1, 2],
        eligible=[True, True, True, True],
        rules=[_rule(7, amount="10.00", products=[1])],
        currency="EUR",
    )
    assert taken == [Decimal("3.34"), Decimal("3.33"), Decimal("3.33"), Decimal("0")]


def test_ineligible_lines_are_not_discounted():
    taken, applied = allocate_discounts(
        amounts=[Decimal("-5.00"), Decimal("20.00")],
        product_ids=[1, 1],
        eligible=[False, True],
        rules=[_rule(1, percent="50")],
        currency="JPY",
    )
    assert taken == [Decimal(0), Decimal("10")]
    assert applied == [1]


amounts = st.decimals(min_value=0, max_value=100000, places=2)


@given(
    lines=st.lists(amounts, min_size=1, max_size=6),
    rules=st.lists(
        st.one_of(
            st.builds(lambda p: ("p", p), st.decimals(min_value="0.01", max_value=100, places=2)),
            st.builds(lambda a: ("a", a), st.decimals(min_value="0.01", max_value=100000, places=2)),
        ),
        max_size=4,
    ),
)
def test_discounts_never_exceed_a_line_nor_go_negative(lines, rules):
    taken, _ = allocate_discounts(
        amounts=lines,
        product_ids=[1] * len(lines),
        eligible=[True] * len(lines),
        rules=[_rule(i, percent=v) if kind == "p" else _rule(i, amount=v) for i, (kind, v) in enumerate(rules)],
        currency="EUR",
    )
    for amount, discount in zip(lines, taken, strict=True):
        assert Decimal(0) <= discount <= amount
        assert discount == round_amount(discount, "EUR")


@given(
    model=st.sampled_from(["flat", "per_unit", "graduated", "volume", "package"]),
    quantity=st.decimals(min_value=0, max_value=10**7, places=3),
)
def test_no_price_model_charges_a_negative_amount(model, quantity):
    parts = price_parts(
        pricing_model=model, unit_amount=Decimal("0.0125"), quantity=quantity, tiers=TIERS, package_size=100
    )
    assert all(p.amount >= 0 for p in parts)
    assert full_amount(parts) >= 0
