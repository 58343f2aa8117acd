"""Business hours: due times and elapsed business time, figures computed by hand.

Europe/Berlin is UTC+1 in winter (CET) and UTC+2 in summer (CEST); in 2026 summer time
starts on Sunday 29 March (02:00 -> 03:00) and ends on Sunday 25 October (03:00 -> 02:00).
Every datetime in and out is naive UTC.
"""
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from shared_inbox.services import business_hours as bh
from shared_inbox.services.business_hours import (
    BusinessHoursError, add_business_time, business_seconds_between, is_open, make_schedule,
    next_opening,
)

OFFICE = {str(d): [["09:00", "17:00"]] for d in range(5)}  # Mon-Fri 09:00-17:00
ALWAYS = {str(d): [["00:00", "24:00"]] for d in range(7)}


def berlin(hours=None, holidays=()):
    return make_schedule("Europe/Berlin", hours or OFFICE, holidays)


def test_friday_afternoon_plus_two_business_hours_is_monday_half_past_ten_local():
    # Friday 20 Nov 2026 16:30 CET = 15:30 UTC; 30 minutes on Friday, 90 on Monday
    # -> Monday 23 Nov 10:30 CET = 09:30 UTC.
    due = add_business_time(berlin(), datetime(2026, 11, 20, 15, 30), 2 * 3600)
    assert due == datetime(2026, 11, 23, 9, 30)
    assert business_seconds_between(berlin(), datetime(2026, 11, 20, 15, 30), due) == 7200


def test_due_time_across_the_spring_dst_change():
    # Friday 27 March 16:00 CET = 15:00 UTC; one hour on Friday, then Monday 30 March is
    # summer time: 10:00 CEST = 08:00 UTC (a naive "+1 day" would be an hour off).
    start = datetime(2026, 3, 27, 15, 0)
    due = add_business_time(berlin(), start, 2 * 3600)
    assert due == datetime(2026, 3, 30, 8, 0)
    assert business_seconds_between(berlin(), start, due) == 7200
    # The Monday still opens at 09:00 local = 07:00 UTC.
    assert next_opening(berlin(), datetime(2026, 3, 28, 12, 0)) == datetime(2026, 3, 30, 7, 0)


def test_dst_change_days_are_23_and_25_hours_long():
    schedule = berlin(ALWAYS)
    # Sunday 29 March 2026 local midnight to midnight: 23:00 UTC Sat -> 22:00 UTC Sun.
    assert business_seconds_between(
        schedule, datetime(2026, 3, 28, 23, 0), datetime(2026, 3, 29, 22, 0)) == 23 * 3600
    # Sunday 25 October 2026: 22:00 UTC Sat -> 23:00 UTC Sun.
    assert business_seconds_between(
        schedule, datetime(2026, 10, 24, 22, 0), datetime(2026, 10, 25, 23, 0)) == 25 * 3600
    # Open around the clock: business time is wall time, even over the change.
    start = datetime(2026, 10, 24, 20, 0)
    assert add_business_time(schedule, start, 10 * 3600) == datetime(2026, 10, 25, 6, 0)


def test_sunday_hours_on_the_autumn_change_day():
    # Sunday 10:00-14:00 local: on 25 October that is 09:00-13:00 UTC (CET again).
    schedule = berlin({"6": [["10:00", "14:00"]]})
    assert next_opening(schedule, datetime(2026, 10, 24, 12, 0)) == datetime(2026, 10, 25, 9, 0)
    assert add_business_time(schedule, datetime(2026, 10, 24, 12, 0), 4 * 3600) == \
        datetime(2026, 10, 25, 13, 0)
    # The Sunday before (18 October, CEST) it was 08:00-12:00 UTC.
    assert next_opening(schedule, datetime(2026, 10, 17, 12, 0)) == datetime(2026, 10, 18, 8, 0)


def test_open_and_closed_at_the_edges_nights_and_weekends():
    s = berlin()
    # Monday 23 November (CET): open 08:00 UTC to 16:00 UTC.
    assert not is_open(s, datetime(2026, 11, 23, 7, 59))
    assert is_open(s, datetime(2026, 11, 23, 8, 0))
    assert is_open(s, datetime(2026, 11, 23, 15, 59))
    assert not is_open(s, datetime(2026, 11, 23, 16, 0))
    assert not is_open(s, datetime(2026, 11, 28, 11, 0))  # Saturday
    # Tuesday 20:00 local -> Wednesday 09:00 local.
    assert next_opening(s, datetime(2026, 11, 24, 19, 0)) == datetime(2026, 11, 25, 8, 0)
    assert next_opening(s, datetime(2026, 11, 24, 10, 0)) == datetime(2026, 11, 24, 10, 0)
    # Received at night: the clock starts at the opening.
    assert add_business_time(s, datetime(2026, 11, 24, 19, 0), 30 * 60) == \
        datetime(2026, 11, 25, 8, 30)
    # A whole week holds five business days of eight hours.
    assert business_seconds_between(
        s, datetime(2026, 11, 23, 0, 0), datetime(2026, 11, 30, 0, 0)) == 5 * 8 * 3600


def test_holidays_are_closed_days():
    # Thursday 24 Dec 2026 16:00 CET (15:00 UTC) + 2h: one hour on Thursday; Friday 25 is a
    # holiday, then the weekend -> Monday 28 Dec 10:00 CET = 09:00 UTC.
    s = berlin(holidays={date(2026, 12, 25)})
    assert add_business_time(s, datetime(2026, 12, 24, 15, 0), 7200) == datetime(2026, 12, 28, 9, 0)
    assert not is_open(s, datetime(2026, 12, 25, 10, 0))
    assert add_business_time(berlin(), datetime(2026, 12, 24, 15, 0), 7200) == \
        datetime(2026, 12, 25, 9, 0)


def test_several_intervals_a_day_and_a_night_shift_over_midnight():
    lunch = berlin({"0": [["09:00", "12:00"], ["13:00", "17:00"]]})
    # Monday 23 Nov 11:30 CET (10:30 UTC) + 1h: 30 minutes before lunch, 30 after.
    assert add_business_time(lunch, datetime(2026, 11, 23, 10, 30), 3600) == \
        datetime(2026, 11, 23, 12, 30)
    assert not is_open(lunch, datetime(2026, 11, 23, 11, 30))
    night = make_schedule("UTC", {"5": [["22:00", "24:00"]], "6": [["00:00", "02:00"]]})
    assert add_business_time(night, datetime(2026, 11, 28, 23, 0), 2 * 3600) == \
        datetime(2026, 11, 29, 1, 0)
    assert business_seconds_between(
        night, datetime(2026, 11, 28, 0, 0), datetime(2026, 11, 30, 0, 0)) == 4 * 3600


def test_no_hours_means_the_wall_clock():
    start = datetime(2026, 11, 20, 15, 30)
    assert make_schedule("Europe/Berlin", None) is None
    assert make_schedule("Europe/Berlin", {"0": []}) is None
    assert add_business_time(None, start, 7200) == datetime(2026, 11, 20, 17, 30)
    assert business_seconds_between(None, start, datetime(2026, 11, 21, 15, 30)) == 86400
    assert business_seconds_between(None, start, start) == 0
    assert is_open(None, start) and next_opening(None, start) == start


def test_parsing_hours_and_zones_reports_what_is_wrong():
    assert bh.parse_day_hours("13:00-17:00, 9:00-12:00") == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert bh.parse_day_hours("  ") == []
    assert bh.parse_day_hours("22:00-24:00") == [["22:00", "24:00"]]
    for text, words in [("17:00-09:00", "after the start"), ("9-17", "not a time"),
                        ("09:00-12:00, 11:00-13:00", "overlap"), ("25:00-26:00", "not a time"),
                        ("nine", "09:00-17:00")]:
        with pytest.raises(BusinessHoursError, match=words):
            bh.parse_day_hours(text)
    with pytest.raises(BusinessHoursError, match="not a time zone"):
        bh.valid_timezone("Mars/Olympus_Mons")
    assert bh.valid_timezone("America/New_York").key == "America/New_York"
    assert bh.describe(berlin()) == ("Mon 09:00-17:00; Tue 09:00-17:00; Wed 09:00-17:00; "
                                     "Thu 09:00-17:00; Fri 09:00-17:00 (Europe/Berlin)")
    assert bh.describe(None) == "Always open"


def test_schedule_of_a_mailbox_uses_its_own_and_global_holidays(host):
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        shop = m.Mailbox(name="Shop", email_address="shop@acme.test", timezone="Europe/Berlin",
                         business_hours=OFFICE)
        other = m.Mailbox(name="Other", email_address="other@acme.test")
        session.add_all([shop, other])
        session.flush()
        session.add_all([
            m.BusinessHoliday(day=date(2026, 12, 25), name="Christmas"),            # global
            m.BusinessHoliday(mailbox_id=shop.id, day=date(2026, 12, 24), name="Eve"),
            m.BusinessHoliday(mailbox_id=other.id, day=date(2026, 12, 28), name="Not ours"),
        ])
        session.commit()
        schedule = bh.schedule_for(shop)
        assert schedule.holidays == {date(2026, 12, 24), date(2026, 12, 25)}
        assert bh.schedule_for(other) is None  # no hours: always open
        # Wednesday 23 Dec 16:00 CET + 2h -> 1h, then Thu/Fri off, Monday 28 10:00 CET.
        assert add_business_time(shop, datetime(2026, 12, 23, 15, 0), 7200) == \
            datetime(2026, 12, 28, 9, 0)
        assert not is_open(shop, datetime(2026, 12, 24, 10, 0))
        assert is_open(other, datetime(2026, 12, 24, 10, 0))
        assert session.scalar(sa.select(m.Mailbox.timezone).where(m.Mailbox.id == other.id)) == "UTC"


def test_time_zones_work_without_the_systems_tz_database(tmp_path):
    """A slim container has no /usr/share/zoneinfo: the `tzdata` dependency must answer."""
    import subprocess
    import sys

    code = ("from datetime import datetime\n"
            "from shared_inbox.services import business_hours as bh\n"
            "import zoneinfo\n"
            "assert zoneinfo.TZPATH == (%r,), zoneinfo.TZPATH\n"
            "s = bh.make_schedule('America/New_York', {'4': [['09:00', '17:00']]})\n"
            "print(bh.add_business_time(s, datetime(2026, 11, 20, 21, 30), 3600))\n"
            "print('Europe/Berlin' in bh.timezone_names())\n" % str(tmp_path))
    import os

    env = dict(os.environ, PYTHONTZPATH=str(tmp_path))  # an empty directory
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # Friday 16:30 New York (UTC-5) + 1 business hour: 30 minutes, then the next Friday
    # (its only working day) from 09:00 -> 09:30 New York = 14:30 UTC.
    assert out.stdout.split() == ["2026-11-27", "14:30:00", "True"]
