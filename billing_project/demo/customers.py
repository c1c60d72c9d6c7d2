"""Realistic, deterministic demo data for ``manage.py seed_demo``. Running it twice changes nothing:
every record is keyed (customers by external id, users by username) and only created when missing."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User
from django.db import transaction

from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from customers.models import Customer, TaxStatus


@dataclass(frozen=True)
class DemoStaff:
    username: str
    password: str
    group: str | None
    superuser: bool = False


DEMO_STAFF = (
    DemoStaff("admin", "admin", None, superuser=True),
    DemoStaff("clerk", "clerk", BILLING_CLERK),
    DemoStaff("finance", "finance", BILLING_ADMIN),
    DemoStaff("auditor", "auditor", AUDITOR),
)

# (name, country, currency, language, city, postal code, street, tax id, tax status)
_COMPANIES = [
    (
        "Müller & Söhne Bäckerei GmbH",
        "DE",
        "EUR",
        "de",
        "München",
        "80331",
        "Marienplatz 8",
        "DE136695976",
        "taxable",
    ),
    ("Schröder Fitnessstudio", "DE", "EUR", "de", "Köln", "50667", "Hohe Straße 41", "", "taxable"),
    ("Weiß Architekten", "DE", "EUR", "de", "Düsseldorf", "40213", "Königsallee 2", "", "taxable"),
    ("Café Größenwahn", "DE", "EUR", "de", "Berlin", "10115", "Torstraße 99", "", "taxable"),
    ("Jürgens Steuerberatung", "DE", "EUR", "de", "Hamburg", "20095", "Mönckebergstraße 7", "", "taxable"),
    ("Zoë's Yoga Loft", "DE", "EUR", "en", "Leipzig", "04109", "Grimmaische Str. 4", "", "taxable"),
    (
        "Gemeinnütziger Sportverein Ölper e.V.",
        "DE",
        "EUR",
        "de",
        "Braunschweig",
        "38114",
        "Ölper Weg 1",
        "",
        "exempt",
    ),
    (
        "Österreichische Bergführer OG",
        "AT",
        "EUR",
        "de",
        "Innsbruck",
        "6020",
        "Maria-Theresien-Straße 18",
        "ATU13585627",
        "reverse_charge",
    ),
    ("Wiener Kaffeehaus Špaček", "AT", "EUR", "de", "Wien", "1010", "Graben 12", "", "taxable"),
    (
        "Boulangerie Lefèvre SARL",
        "FR",
        "EUR",
        "fr",
        "Lyon",
        "69002",
        "Rue de la République 15",
        "FR40303265045",
        "reverse_charge",
    ),
    ("Château Beauséjour", "FR", "EUR", "fr", "Bordeaux", "33000", "Cours de l'Intendance 3", "", "taxable"),
    ("Crème & Brûlée Traiteur", "FR", "EUR", "fr", "Paris", "75004", "Rue de Rivoli 52", "", "taxable"),
    (
        "Van der Berg Logistiek B.V.",
        "NL",
        "EUR",
        "en",
        "Rotterdam",
        "3011",
        "Coolsingel 40",
        "NL004495445B01",
        "reverse_charge",
    ),
    (
        "Brasserie De Koninck",
        "BE",
        "EUR",
        "fr",
        "Antwerpen",
        "2000",
        "Meir 50",
        "BE0428759497",
        "reverse_charge",
    ),
    (
        "Pasticceria Dolcè S.r.l.",
        "IT",
        "EUR",
        "en",
        "Milano",
        "20121",
        "Via Montenapoleone 9",
        "IT00743110157",
        "reverse_charge",
    ),
    (
        "Señor Muñoz Consultoría",
        "ES",
        "EUR",
        "es",
        "Madrid",
        "28013",
        "Calle Mayor 10",
        "ESA28015865",
        "reverse_charge",
    ),
    (
        "Ελληνική Φιλοξενία Α.Ε.",
        "GR",
        "EUR",
        "en",
        "Αθήνα",
        "10557",
        "Ερμού 25",
        "EL094259216",
        "reverse_charge",
    ),
    ("Παπαδόπουλος Ταβέρνα", "GR", "EUR", "en", "Θεσσαλονίκη", "54624", "Τσιμισκή 30", "", "taxable"),
    (
        "Ó Súilleabháin Software Ltd",
        "IE",
        "EUR",
        "en",
        "Cork",
        "T12",
        "Patrick Street 20",
        "IE6388047V",
        "reverse_charge",
    ),
    (
        "Sørensen Design ApS",
        "DK",
        "EUR",
        "en",
        "Aarhus",
        "8000",
        "Søndergade 12",
        "DK13585628",
        "reverse_charge",
    ),
    (
        "Kowalski i Wspólnicy Sp. z o.o.",
        "PL",
        "PLN",
        "en",
        "Łódź",
        "90-001",
        "ul. Piotrkowska 104",
        "PL5260250274",
        "reverse_charge",
    ),
    ("Piekarnia Żółć", "PL", "PLN", "en", "Kraków", "31-001", "Rynek Główny 1", "", "taxable"),
    ("Studio Tańca Ślęża", "PL", "PLN", "en", "Wrocław", "50-001", "ul. Świdnicka 8", "", "taxable"),
    ("Gdańskie Źródła", "PL", "PLN", "en", "Gdańsk", "80-001", "ul. Długa 45", "", "taxable"),
    (
        "Åkesson & Öberg AB",
        "SE",
        "SEK",
        "en",
        "Göteborg",
        "411 01",
        "Kungsgatan 30",
        "SE556703748501",
        "reverse_charge",
    ),
    ("Malmö Måleri", "SE", "SEK", "en", "Malmö", "211 22", "Södergatan 5", "", "taxable"),
    (
        "Thistle & Rose Bakery Ltd",
        "GB",
        "GBP",
        "en",
        "Edinburgh",
        "EH1 1YZ",
        "Royal Mile 200",
        "GB980780684",
        "taxable",
    ),
    ("O'Brien Physiotherapy", "GB", "GBP", "en", "Manchester", "M1 1AE", "Deansgate 100", "", "taxable"),
    ("Brontë Books", "GB", "GBP", "en", "Leeds", "LS1 1UR", "Briggate 60", "", "taxable"),
    ("Acme Widgets Inc.", "US", "USD", "en", "Springfield", "62701", "100 Main St", "", "exempt"),
    ("Peña Analytics LLC", "US", "USD", "en", "Austin", "78701", "500 Congress Ave", "", "exempt"),
    ("Nguyễn Family Dental", "US", "USD", "en", "San José", "95113", "1 Market St", "", "exempt"),
    ("Zürcher Uhrmacher AG", "CH", "CHF", "de", "Zürich", "8001", "Bahnhofstrasse 20", "", "taxable"),
    ("Genève Crèmerie Sàrl", "CH", "CHF", "en", "Genève", "1204", "Rue du Rhône 8", "", "taxable"),
    ("株式会社さくらデザイン", "JP", "JPY", "en", "東京都千代田区", "100-0005", "丸の内1-1", "", "taxable"),
    ("上海云帆科技有限公司", "CN", "USD", "en", "上海市浦东新区", "200120", "世纪大道100号", "", "taxable"),
    ("مؤسسة البحرين للتجارة", "BH", "BHD", "en", "المنامة", "317", "Road 1701", "", "taxable"),
    ("주식회사 한빛소프트", "KR", "USD", "en", "서울특별시 강남구", "06164", "테헤란로 521", "", "taxable"),
    (
        "ООО «Северный ветер»",
        "BG",
        "EUR",
        "en",
        "София",
        "1000",
        "бул. Витоша 10",
        "BG175074752",
        "reverse_charge",
    ),
    ("Кафе «Пушкин»", "BG", "EUR", "en", "Пловдив", "4000", "ул. Главна 5", "", "taxable"),
    (
        "Dvořák Hudba s.r.o.",
        "CZ",
        "EUR",
        "en",
        "Praha",
        "110 00",
        "Václavské náměstí 1",
        "CZ25123891",
        "reverse_charge",
    ),
    (
        "Pão de Açúcar Lda",
        "PT",
        "EUR",
        "en",
        "Lisboa",
        "1100-148",
        "Rua Augusta 100",
        "PT501964843",
        "reverse_charge",
    ),
    ("Hőforrás Kft.", "HU", "EUR", "en", "Budapest", "1051", "Váci utca 10", "HU12892312", "reverse_charge"),
    (
        "Mäkinen Sauna Oy",
        "FI",
        "EUR",
        "en",
        "Helsinki",
        "00100",
        "Aleksanterinkatu 15",
        "FI20774740",
        "reverse_charge",
    ),
]

_PEOPLE = [
    ("Jürgen Groß", "DE", "EUR", "de", "Stuttgart", "70173", "Königstraße 1"),
    ("Ängela Kühn", "DE", "EUR", "de", "Frankfurt am Main", "60311", "Zeil 10"),
    ("Björn Åström", "SE", "SEK", "en", "Uppsala", "753 10", "Drottninggatan 3"),
    ("Małgorzata Wiśniewska", "PL", "PLN", "en", "Poznań", "61-001", "Stary Rynek 7"),
    ("Zoltán Szőke", "DE", "EUR", "en", "Dresden", "01067", "Prager Straße 2"),
    ("François Lemaître", "FR", "EUR", "fr", "Nice", "06000", "Promenade des Anglais 9"),
    ("Siobhán Ní Bhriain", "GB", "GBP", "en", "London", "EC1A 1BB", "1 St Martin's Le Grand"),
    ("José Martínez", "US", "USD", "en", "Miami", "33101", "200 Biscayne Blvd"),
    ("Αλέξανδρος Παπαδάκης", "GR", "EUR", "en", "Πάτρα", "26221", "Μαιζώνος 40"),
    ("Дмитрий Иванов", "DE", "EUR", "de", "Berlin", "10243", "Karl-Marx-Allee 70"),
    ("田中 花子", "JP", "JPY", "en", "京都", "600-8001", "四条通 10"),
    ("Renée Dubois", "CH", "CHF", "en", "Lausanne", "1003", "Place Saint-François 1"),
    ("Çağla Öztürk", "DE", "EUR", "de", "Bremen", "28195", "Obernstraße 5"),
    ("Lars Ørsted", "DK", "EUR", "en", "København", "1050", "Kongens Nytorv 1"),
    ("Ines Štěpánková", "CZ", "EUR", "en", "Brno", "602 00", "Masarykova 12"),
    ("Fatima Al-Khalifa", "BH", "BHD", "en", "Manama", "316", "Road 3801"),
]


def _slug_email(name: str, index: int) -> str:
    return f"billing+{index:03d}@demo.example"


def seed_staff() -> int:
    created_count = 0
    for staff in DEMO_STAFF:
        user, created = User.objects.get_or_create(
            username=staff.username,
            defaults={
                "is_staff": True,
                "is_superuser": staff.superuser,
                "email": f"{staff.username}@demo.example",
            },
        )
        if created:
            created_count += 1
            user.set_password(staff.password)
            user.save(update_fields=["password"])
            if staff.group:
                user.groups.add(Group.objects.get(name=staff.group))
    return created_count


# Customers who take structured e-invoices (docs/decisions/einvoice.md): a German public-law association with a
# Leitweg-ID (XRechnung UBL), a tax adviser (XRechnung CII), a French bakery (Factur-X inside its PDF) and a
# Belgian brewery on Peppol (its Belgian company number, EAS 0208).
_EINVOICE = {
    "Gemeinnütziger Sportverein Ölper e.V.": {
        "einvoice_format": "xrechnung_ubl",
        "buyer_reference": "03101000-0001-44",
        "purchase_order": "SV-2026-017",
    },
    "Jürgens Steuerberatung": {"einvoice_format": "xrechnung_cii", "buyer_reference": "JUERGENS-BUCHHALTUNG"},
    "Boulangerie Lefèvre SARL": {"einvoice_format": "facturx", "buyer_reference": "LEFEVRE-ACHATS"},
    "Brasserie De Koninck": {
        "einvoice_format": "peppol",
        "buyer_reference": "DK-PROCUREMENT",
        "einvoice_address": "0428759497",
        "einvoice_address_scheme": "0208",
    },
}


def seed_customers() -> int:
    """Create the demo customers that are missing; returns how many were created."""
    rows: list[dict[str, object]] = []
    for index, (name, country, currency, language, city, postal, street, tax_id, tax_status) in enumerate(
        _COMPANIES, start=1
    ):
        rows.append(
            {
                "external_id": f"DEMO-{index:04d}",
                "name": name,
                "legal_name": name,
                "email": _slug_email(name, index),
                "address_line1": street,
                "postal_code": postal,
                "city": city,
                "country": country,
                "currency": currency,
                "language": language,
                "tax_id": tax_id,
                "tax_status": tax_status,
                "payment_terms_days": (14, 30, 7, 14)[index % 4],
                **_EINVOICE.get(name, {}),
            }
        )
    offset = len(_COMPANIES)
    for index, (name, country, currency, language, city, postal, street) in enumerate(_PEOPLE, start=offset + 1):
        rows.append(
            {
                "external_id": f"DEMO-{index:04d}",
                "name": name,
                "email": _slug_email(name, index),
                "address_line1": street,
                "postal_code": postal,
                "city": city,
                "country": country,
                "currency": currency,
                "language": language,
                "tax_status": TaxStatus.EXEMPT if country in ("US", "JP", "BH") else TaxStatus.TAXABLE,
                "payment_terms_days": 14,
            }
        )
    existing = set(Customer.objects.filter(external_id__startswith="DEMO-").values_list("external_id", flat=True))
    created = 0
    with transaction.atomic():
        for row in rows:
            if row["external_id"] in existing:
                continue
            customer = Customer(**row)
            customer.full_clean()
            customer.save()
            created += 1
    return created
