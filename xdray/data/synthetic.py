"""Offline synthetic multilingual NER data for the quickstart and the tests.

Six languages over four scripts (Latin: en, de, es; Cyrillic: ru; Greek: el; Devanagari: hi), PER /
ORG / LOC entities of one to four tokens in varied sentence templates. It is learnable but not
trivial: one name in five is held out of train (dev/test need context, not memory), some words are
both a person and a place (Jordan, Washington, Paris), place names occur inside organisation names
(where they are I-ORG), and a share of sentences carry no entity. Deterministic by seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LANGUAGES = ("en", "de", "es", "ru", "el", "hi")


@dataclass(frozen=True)
class Lexicon:
    first: tuple[str, ...]
    last: tuple[str, ...]
    places: tuple[str, ...]
    orgs: tuple[str, ...]  # may contain {LOC}: an organisation named after a place
    templates: tuple[str, ...]  # slots {PER} {ORG} {LOC}; tokens separated by spaces
    plain: tuple[str, ...]  # sentences without entities


_LEXICONS = {
    "en": Lexicon(
        first=("John", "Mary", "Jordan", "Alice", "Robert", "Linda", "Michael", "Sarah", "David",
               "Emma", "James", "Grace", "Paris", "Thomas", "Helen"),
        last=("Smith", "Washington", "Brown", "Taylor", "Miller", "Clarke", "Jordan", "Walker",
              "Hughes", "Turner", "Bennett", "Foster", "Murray", "Lewis", "Reed"),
        places=("London", "Paris", "Jordan", "Washington", "New York", "Chicago", "Manchester",
                "Texas", "Boston", "Kent", "Dublin", "Oxford", "Cape Town", "Sydney", "Denver"),
        orgs=("Google", "the United Nations", "Bank of {LOC}", "University of {LOC}",
              "Microsoft", "the Red Cross", "{LOC} City Council", "General Motors", "BBC",
              "Royal Society", "{LOC} Times", "Oxfam", "Boeing", "Apple", "Reuters"),
        templates=("{PER} was born in {LOC} .", "{PER} joined {ORG} in 1998 .",
                   "{ORG} opened an office in {LOC} last year .",
                   "According to {PER} , the talks in {LOC} failed .",
                   "{PER} met {PER} at the {ORG} summit .", "Shares of {ORG} fell on Monday .",
                   "{PER} moved from {LOC} to {LOC} .", "The river flows through {LOC} and {LOC} .",
                   "{ORG} hired {PER} as its new director .", "She visited {LOC} with {PER} ."),
        plain=("The weather was cold and wet .", "Prices rose again this week .",
               "He said nothing about the plan .", "It is one of the oldest buildings ."),
    ),
    "de": Lexicon(
        first=("Hans", "Anna", "Peter", "Julia", "Klaus", "Sabine", "Jürgen", "Monika", "Stefan",
               "Petra", "Lukas", "Paris", "Heike", "Tobias", "Ute"),
        last=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
              "Berlin", "Hoffmann", "Schäfer", "Koch", "Richter", "Klein", "Wolf"),
        places=("Berlin", "München", "Hamburg", "Köln", "Paris", "Wien", "Dresden", "Bayern",
                "Frankfurt", "Leipzig", "Bremen", "Zürich", "Hessen", "Stuttgart", "Bonn"),
        orgs=("Siemens", "Deutsche Bank", "Universität {LOC}", "Stadtwerke {LOC}", "Bundestag",
              "Volkswagen", "Bayer", "Allianz", "Rotes Kreuz", "{LOC}er Zeitung", "Lufthansa",
              "BASF", "Bosch", "Deutsche Bahn", "Adidas"),
        templates=("{PER} wurde in {LOC} geboren .", "{PER} arbeitet seit 1998 bei {ORG} .",
                   "{ORG} eröffnete ein Büro in {LOC} .", "Laut {PER} sind die Gespräche in {LOC} gescheitert .",
                   "{PER} traf {PER} beim Treffen von {ORG} .", "Die Aktie von {ORG} fiel am Montag .",
                   "{PER} zog von {LOC} nach {LOC} .", "Der Fluss fließt durch {LOC} und {LOC} .",
                   "{ORG} stellte {PER} als neuen Leiter ein .", "Sie besuchte {LOC} mit {PER} ."),
        plain=("Das Wetter war kalt und nass .", "Die Preise stiegen diese Woche erneut .",
               "Er sagte nichts über den Plan .", "Es ist eines der ältesten Gebäude ."),
    ),
    "es": Lexicon(
        first=("Juan", "María", "Carlos", "Lucía", "José", "Carmen", "Pedro", "Elena", "Miguel",
               "Sofía", "Santiago", "Isabel", "Diego", "Ana", "Pablo"),
        last=("García", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Toledo", "Díaz",
              "Ruiz", "Moreno", "Álvarez", "Romero", "Navarro", "Torres", "Vargas"),
        places=("Madrid", "Barcelona", "Sevilla", "Toledo", "Santiago", "Valencia", "Lima",
                "Buenos Aires", "Bogotá", "Granada", "Quito", "Málaga", "Bilbao", "Cuba", "México"),
        orgs=("Telefónica", "Banco de {LOC}", "Universidad de {LOC}", "Real Madrid", "Iberia",
              "Cruz Roja", "Ayuntamiento de {LOC}", "Repsol", "Santander", "El País", "Inditex",
              "Naciones Unidas", "Mapfre", "Endesa", "Correos"),
        templates=("{PER} nació en {LOC} .", "{PER} trabaja en {ORG} desde 1998 .",
                   "{ORG} abrió una oficina en {LOC} el año pasado .",
                   "Según {PER} , las negociaciones en {LOC} fracasaron .",
                   "{PER} conoció a {PER} en la cumbre de {ORG} .", "Las acciones de {ORG} cayeron el lunes .",
                   "{PER} se mudó de {LOC} a {LOC} .", "El río pasa por {LOC} y {LOC} .",
                   "{ORG} contrató a {PER} como nuevo director .", "Ella visitó {LOC} con {PER} ."),
        plain=("El tiempo fue frío y húmedo .", "Los precios subieron otra vez esta semana .",
               "No dijo nada sobre el plan .", "Es uno de los edificios más antiguos ."),
    ),
    "ru": Lexicon(
        first=("Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена", "Николай",
               "Татьяна", "Андрей", "Наталья", "Михаил", "Ирина", "Павел"),
        last=("Петров", "Смирнова", "Кузнецов", "Волков", "Соколова", "Попов", "Лебедев", "Козлова",
              "Новиков", "Морозов", "Орлов", "Павлова", "Фёдоров", "Зайцев", "Белова"),
        places=("Москва", "Казань", "Новосибирск", "Россия", "Сибирь", "Самара", "Омск", "Тула",
                "Санкт-Петербург", "Урал", "Киров", "Пермь", "Сочи", "Ярославль", "Курск"),
        orgs=("Газпром", "Сбербанк", "Московский университет", "Большой театр", "Аэрофлот",
              "Красный Крест", "Администрация {LOC}", "Лукойл", "Роснефть", "Известия", "Яндекс",
              "Университет {LOC}", "РЖД", "Банк {LOC}", "Ростелеком"),
        templates=("{PER} родился в {LOC} .", "{PER} работает в {ORG} с 1998 года .",
                   "{ORG} открыл офис в {LOC} в прошлом году .", "По словам {PER} , переговоры в {LOC} провалились .",
                   "{PER} встретил {PER} на саммите {ORG} .", "Акции {ORG} упали в понедельник .",
                   "{PER} переехал из {LOC} в {LOC} .", "Река течёт через {LOC} и {LOC} .",
                   "{ORG} назначил {PER} новым директором .", "Она посетила {LOC} вместе с {PER} ."),
        plain=("Погода была холодной и сырой .", "Цены снова выросли на этой неделе .",
               "Он ничего не сказал о плане .", "Это одно из старейших зданий ."),
    ),
    "el": Lexicon(
        first=("Γιώργος", "Μαρία", "Νίκος", "Ελένη", "Κώστας", "Σοφία", "Δημήτρης", "Άννα", "Γιάννης",
               "Κατερίνα", "Παύλος", "Χρήστος", "Δέσποινα", "Αλέξης", "Ειρήνη"),
        last=("Παπαδόπουλος", "Οικονόμου", "Γεωργίου", "Νικολάου", "Ιωάννου", "Βλάχος", "Αθανασίου",
              "Κωνσταντίνου", "Δημητρίου", "Μαυρίδης", "Πάτρας", "Λαμπράκης", "Σταύρου", "Καραγιάννης", "Ζαχαρίου"),
        places=("Αθήνα", "Θεσσαλονίκη", "Κρήτη", "Πάτρα", "Ρόδος", "Κέρκυρα", "Λάρισα", "Βόλος",
                "Ιωάννινα", "Ηράκλειο", "Καβάλα", "Χανιά", "Σπάρτη", "Νάξος", "Κύπρος"),
        orgs=("Εθνική Τράπεζα", "Πανεπιστήμιο {LOC}", "Ολυμπιακός", "Δήμος {LOC}", "Ερυθρός Σταυρός",
              "Βουλή των Ελλήνων", "ΟΤΕ", "Αεροπορία Αιγαίου", "Καθημερινή", "Τράπεζα Πειραιώς",
              "ΔΕΗ", "Παναθηναϊκός", "ΕΡΤ", "Λιμάνι {LOC}", "Cosmote"),
        templates=("Ο {PER} γεννήθηκε στην {LOC} .", "Ο {PER} εργάζεται στην {ORG} από το 1998 .",
                   "Η {ORG} άνοιξε γραφείο στην {LOC} πέρυσι .", "Σύμφωνα με τον {PER} , οι συνομιλίες στην {LOC} απέτυχαν .",
                   "Ο {PER} συνάντησε τον {PER} στη σύνοδο της {ORG} .", "Οι μετοχές της {ORG} έπεσαν τη Δευτέρα .",
                   "Ο {PER} μετακόμισε από την {LOC} στην {LOC} .", "Ο ποταμός περνά από την {LOC} και την {LOC} .",
                   "Η {ORG} προσέλαβε τον {PER} ως νέο διευθυντή .", "Επισκέφθηκε την {LOC} με τον {PER} ."),
        plain=("Ο καιρός ήταν κρύος και υγρός .", "Οι τιμές ανέβηκαν ξανά αυτή την εβδομάδα .",
               "Δεν είπε τίποτα για το σχέδιο .", "Είναι ένα από τα παλαιότερα κτίρια ."),
    ),
    "hi": Lexicon(
        first=("राहुल", "प्रिया", "अमित", "सुनीता", "विकास", "अंजलि", "संजय", "पूजा", "अर्जुन", "नेहा",
               "रवि", "कविता", "मोहन", "सीमा", "आनंद"),
        last=("शर्मा", "वर्मा", "गुप्ता", "सिंह", "पटेल", "यादव", "जोशी", "मिश्रा", "कुमार", "चौधरी",
              "अग्रवाल", "मेहता", "पांडे", "रेड्डी", "नायर"),
        places=("दिल्ली", "मुंबई", "कोलकाता", "जयपुर", "पटना", "लखनऊ", "भारत", "नेपाल", "पुणे",
                "चेन्नई", "भोपाल", "गोवा", "आगरा", "इंदौर", "कानपुर"),
        orgs=("भारतीय रेलवे", "टाटा समूह", "{LOC} विश्वविद्यालय", "रिज़र्व बैंक", "इसरो", "{LOC} नगर निगम",
              "रेड क्रॉस", "इन्फोसिस", "दैनिक जागरण", "संयुक्त राष्ट्र", "एयर इंडिया", "{LOC} पुलिस",
              "रिलायंस", "विप्रो", "बीबीसी"),
        templates=("{PER} का जन्म {LOC} में हुआ था ।", "{PER} 1998 से {ORG} में काम करते हैं ।",
                   "{ORG} ने पिछले साल {LOC} में दफ़्तर खोला ।", "{PER} के अनुसार {LOC} में बातचीत विफल रही ।",
                   "{PER} ने {ORG} के सम्मेलन में {PER} से मुलाक़ात की ।", "सोमवार को {ORG} के शेयर गिरे ।",
                   "{PER} {LOC} से {LOC} चले गए ।", "नदी {LOC} और {LOC} से होकर बहती है ।",
                   "{ORG} ने {PER} को नया निदेशक बनाया ।", "वह {PER} के साथ {LOC} गई ।"),
        plain=("मौसम ठंडा और गीला था ।", "इस हफ़्ते फिर से दाम बढ़े ।",
               "उसने योजना के बारे में कुछ नहीं कहा ।", "यह सबसे पुरानी इमारतों में से एक है ।"),
    ),
}


def _usable(names: tuple[str, ...], split: str) -> tuple[str, ...]:
    """Every fifth name is held out of train, so dev and test need context, not memory."""
    if split == "train":
        return tuple(n for i, n in enumerate(names) if i % 5 != 0)
    return names


def _entity(kind: str, lex: Lexicon, split: str, rng: random.Random) -> list[tuple[str, str]]:
    """One entity as (token, tag) pairs."""
    if kind == "PER":
        words = [rng.choice(_usable(lex.first, split))]
        if rng.random() < 0.7:
            words.append(rng.choice(_usable(lex.last, split)))
        return [(w, ("B-" if i == 0 else "I-") + "PER") for i, w in enumerate(words)]
    if kind == "LOC":
        words = rng.choice(_usable(lex.places, split)).split()
        return [(w, ("B-" if i == 0 else "I-") + "LOC") for i, w in enumerate(words)]
    name = rng.choice(_usable(lex.orgs, split))
    name = name.replace("{LOC}", rng.choice(_usable(lex.places, split)))
    words = name.split()
    if words[0] in ("the",):  # the article stays outside the entity, as in WikiANN
        return [("the", "O")] + [(w, ("B-" if i == 0 else "I-") + "ORG") for i, w in enumerate(words[1:])]
    return [(w, ("B-" if i == 0 else "I-") + "ORG") for i, w in enumerate(words)]


def sentence(lang: str, split: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """One (tokens, tags) sentence in `lang`; tags are IOB2 strings."""
    lex = _LEXICONS[lang]
    if rng.random() < 0.12:
        tokens = rng.choice(lex.plain).split()
        return tokens, ["O"] * len(tokens)
    tokens, tags = [], []
    for piece in rng.choice(lex.templates).split():
        if piece in ("{PER}", "{ORG}", "{LOC}"):
            pairs = _entity(piece[1:4], lex, split, rng)
        else:
            pairs = [(piece, "O")]
        for token, tag in pairs:
            tokens.append(token)
            tags.append(tag)
    return tokens, tags


def generate(lang: str, split: str, count: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """`count` sentences for one language and split, the same for the same seed."""
    if lang not in _LEXICONS:
        raise KeyError(lang)
    rng = random.Random(f"xdray-synthetic/{seed}/{lang}/{split}")
    return [sentence(lang, split, rng) for _ in range(count)]
